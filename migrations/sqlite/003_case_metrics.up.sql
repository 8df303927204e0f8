-- 003_case_metrics (numbered 002 in this dialect before the two shared one numbering): computed quality metrics per case, for review queries.
-- Same layout and rules as migrations/postgres/003_case_metrics: derived
-- data, replaced when the record changes, so not append-only.

CREATE TABLE case_metrics (
    case_id             TEXT    NOT NULL PRIMARY KEY REFERENCES cases (case_id),
    kind                TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    site                TEXT    NOT NULL,
    room                TEXT    NOT NULL,
    scheduled_start     INTEGER NOT NULL, -- microseconds since the epoch
    month               TEXT    NOT NULL, -- UTC YYYY-MM of scheduled_start
    surgeon             TEXT    NOT NULL,
    perfusionist        TEXT    NOT NULL,
    covers_seq          INTEGER NOT NULL,
    definitions_version INTEGER NOT NULL,
    computed_at         INTEGER NOT NULL,
    doc                 TEXT    NOT NULL
) STRICT;

CREATE INDEX case_metrics_by_start ON case_metrics (scheduled_start DESC, case_id DESC);
CREATE INDEX case_metrics_by_site ON case_metrics (site, room, scheduled_start);
CREATE INDEX case_metrics_by_surgeon ON case_metrics (surgeon, scheduled_start);
CREATE INDEX case_metrics_by_perfusionist ON case_metrics (perfusionist, scheduled_start);

CREATE TABLE case_metric_values (
    case_id TEXT NOT NULL REFERENCES case_metrics (case_id) ON DELETE CASCADE,
    metric  TEXT NOT NULL,
    value   REAL NOT NULL,
    PRIMARY KEY (case_id, metric)
) STRICT, WITHOUT ROWID;

CREATE INDEX case_metric_values_by_metric ON case_metric_values (metric, value, case_id);
