-- 003_case_metrics: computed quality metrics per case, for review queries.
--
-- Derived data, not the record: a case's rows are replaced whenever its
-- record changes (close, correction, addendum, sign) and can always be
-- recomputed from the record, so these tables are deliberately not
-- append-only. covers_seq says which ledger head the values were computed
-- at; definitions_version which metric definitions were used.
--
-- Layout: one header row per case with the attributes reviewers filter and
-- group on, plus a narrow (case, metric, value) table. A metric filter is an
-- index probe on (metric, value) or, per candidate case, on the primary key
-- (case_id, metric); adding a metric needs no schema change.

CREATE TABLE case_metrics (
    case_id             uuid        NOT NULL PRIMARY KEY REFERENCES cases (case_id),
    kind                text        NOT NULL,
    status              text        NOT NULL,
    site                text        NOT NULL,
    room                text        NOT NULL,
    scheduled_start     timestamptz NOT NULL,
    month               text        NOT NULL, -- UTC YYYY-MM of scheduled_start
    surgeon             text        NOT NULL,
    perfusionist        text        NOT NULL,
    covers_seq          bigint      NOT NULL,
    definitions_version integer     NOT NULL,
    computed_at         timestamptz NOT NULL,
    doc                 jsonb       NOT NULL  -- charting.Metrics: every value, the thresholds, the BSA formula
);

CREATE INDEX case_metrics_by_start ON case_metrics (scheduled_start DESC, case_id DESC);
CREATE INDEX case_metrics_by_site ON case_metrics (site, room, scheduled_start);
CREATE INDEX case_metrics_by_surgeon ON case_metrics (surgeon, scheduled_start);
CREATE INDEX case_metrics_by_perfusionist ON case_metrics (perfusionist, scheduled_start);

CREATE TABLE case_metric_values (
    case_id uuid             NOT NULL REFERENCES case_metrics (case_id) ON DELETE CASCADE,
    metric  text             NOT NULL,
    value   double precision NOT NULL,
    PRIMARY KEY (case_id, metric)
);

CREATE INDEX case_metric_values_by_metric ON case_metric_values (metric, value, case_id);
