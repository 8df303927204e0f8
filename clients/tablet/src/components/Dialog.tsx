// The one dialog of the app: a modal form built from field specs. Entry
// dialogs, corrections, voids, close, sign and addenda all use it, so every
// one has the same controls: [data-testid=entry-dialog], inputs named
// after the entry's fields, [data-testid=entry-confirm] and
// [data-testid=entry-cancel].

import { Fragment, type ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { showError } from "../store";

export interface FieldSpec {
  name: string;
  label: string;
  type: "number" | "text" | "textarea" | "select" | "datetime" | "date" | "checkbox" | "radio";
  unit?: string;
  options?: [string, string][];
  required?: boolean;
  min?: number;
  max?: number;
  step?: string;
  placeholder?: string;
  /** Suggestions (datalist) for a text field. */
  suggest?: string[];
  hint?: string;
  /** Heading shown above this field (to group a panel). */
  section?: string;
  /** Span the whole row. */
  wide?: boolean;
}

export type Values = Record<string, string>;

export interface DialogSpec {
  title: string;
  /** A plain question or explanation above the fields. */
  message?: ComponentChildren;
  fields: FieldSpec[];
  initial?: Values;
  confirmText: string;
  danger?: boolean;
  /** Extra content computed from the values (e.g. the BSA). */
  preview?: (v: Values) => ComponentChildren;
  /** Returns an error to show in the dialog, or nothing when done. */
  onConfirm: (v: Values) => Promise<string | void> | string | void;
  /** Id for the dialog, when a screen wants to tell its dialogs apart. */
  kind?: string;
  wide?: boolean;
}

let seq = 0;

export function Dialog({ spec, onClose }: { spec: DialogSpec; onClose: () => void }) {
  const [values, setValues] = useState<Values>(() => ({ ...(spec.initial ?? {}) }));
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const formRef = useRef<HTMLFormElement>(null);
  const [id] = useState(() => `dlg${++seq}`);

  useEffect(() => {
    showError(null); // the dialog shows its own errors: one error element at a time
    const first = formRef.current?.querySelector<HTMLElement>("input:not([type=hidden]),select,textarea");
    (first ?? formRef.current?.querySelector<HTMLElement>("[data-testid=entry-confirm]"))?.focus();
    const esc = (e: KeyboardEvent) => {
      if (e.key === "Escape") onClose();
    };
    window.addEventListener("keydown", esc);
    return () => window.removeEventListener("keydown", esc);
  }, []);

  const set = (name: string, v: string) => setValues((old) => ({ ...old, [name]: v }));

  const submit = async (ev: Event) => {
    ev.preventDefault();
    if (busy) return;
    for (const f of spec.fields) {
      if (f.required && !(values[f.name] ?? "").trim()) {
        setError(`${f.label} is required.`);
        formRef.current?.querySelector<HTMLElement>(`[name="${CSS.escape(f.name)}"]`)?.focus();
        return;
      }
    }
    setBusy(true);
    setError(null);
    try {
      const err = await spec.onConfirm(values);
      if (err) setError(err);
      else onClose();
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="overlay" onClick={(e) => e.target === e.currentTarget && onClose()}>
      <div
        class={`dialog${spec.wide ? " wide" : ""}${spec.danger ? " danger" : ""}`}
        data-testid="entry-dialog"
        data-kind={spec.kind}
        role="dialog"
        aria-modal="true"
        aria-labelledby={`${id}-title`}
      >
      <form ref={formRef} onSubmit={submit} noValidate>
        <h2 id={`${id}-title`}>{spec.title}</h2>
        {spec.message && <div class="dialog-message">{spec.message}</div>}
        <div class="fields">
          {spec.fields.map((f) => (
            <Fragment key={f.name}>
              {f.section && <h3 class="field-section">{f.section}</h3>}
              <Field f={f} id={`${id}-${f.name}`} value={values[f.name] ?? ""} set={(v) => set(f.name, v)} />
            </Fragment>
          ))}
        </div>
        {spec.preview && <div class="preview">{spec.preview(values)}</div>}
        {error && (
          <p class="dialog-error" role="alert" data-testid="error">
            {error}
          </p>
        )}
        <div class="dialog-actions">
          <button type="button" class="btn" data-testid="entry-cancel" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" class={`btn ${spec.danger ? "btn-danger" : "btn-primary"}`} data-testid="entry-confirm" disabled={busy}>
            {busy ? "Working…" : spec.confirmText}
          </button>
        </div>
      </form>
      </div>
    </div>
  );
}

function Field({ f, id, value, set }: { f: FieldSpec; id: string; value: string; set: (v: string) => void }) {
  const label = (
    <label for={id}>
      {f.label}
      {f.required ? <span class="req" aria-hidden="true"> *</span> : null}
      {f.unit ? <span class="unit"> ({f.unit})</span> : null}
    </label>
  );
  const common = { id, name: f.name, required: f.required, "aria-required": !!f.required };
  let control;
  switch (f.type) {
    case "textarea":
      control = <textarea {...common} rows={3} value={value} placeholder={f.placeholder} onInput={(e) => set(e.currentTarget.value)} />;
      break;
    case "select":
      control = (
        <select {...common} value={value} onChange={(e) => set(e.currentTarget.value)}>
          {(f.options ?? []).map(([v, t]) => (
            <option value={v} key={v}>
              {t}
            </option>
          ))}
        </select>
      );
      break;
    case "checkbox":
      return (
        <div class={`field check${f.wide ? " wide" : ""}`}>
          <input type="checkbox" {...common} checked={value === "true"} onChange={(e) => set(e.currentTarget.checked ? "true" : "")} />
          {label}
        </div>
      );
    case "radio":
      return (
        <fieldset class={`field radio${f.wide ? " wide" : ""}`}>
          <legend>{f.label}</legend>
          <div class="segmented">
            {(f.options ?? []).map(([v, t]) => (
              <label class={value === v && v !== "" ? "on" : ""} key={v}>
                <input type="radio" name={f.name} value={v} checked={value === v} onChange={() => set(v)} />
                {t}
              </label>
            ))}
          </div>
        </fieldset>
      );
    case "datetime":
      control = <input {...common} type="datetime-local" step="1" value={value} onInput={(e) => set(e.currentTarget.value)} />;
      break;
    case "date":
      control = <input {...common} type="date" value={value} onInput={(e) => set(e.currentTarget.value)} />;
      break;
    case "number":
      control = (
        <input
          {...common}
          type="number"
          inputMode="decimal"
          step={f.step ?? "any"}
          min={f.min}
          max={f.max}
          value={value}
          placeholder={f.placeholder}
          onInput={(e) => set(e.currentTarget.value)}
        />
      );
      break;
    default:
      control = (
        <input
          {...common}
          type="text"
          value={value}
          placeholder={f.placeholder}
          list={f.suggest ? `${id}-list` : undefined}
          autoComplete="off"
          onInput={(e) => set(e.currentTarget.value)}
        />
      );
  }
  return (
    <div class={`field${f.wide ? " wide" : ""}`}>
      {label}
      {control}
      {f.suggest && (
        <datalist id={`${id}-list`}>
          {f.suggest.map((s) => (
            <option value={s} key={s} />
          ))}
        </datalist>
      )}
      {f.hint && <small class="hint">{f.hint}</small>}
    </div>
  );
}

// ------------------------------------------------------------ time helpers

/** ms epoch → the value of a datetime-local input (local time, seconds). */
export function toLocalInput(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** The value of a datetime-local input → ms epoch; NaN when empty or invalid. */
export function fromLocalInput(s: string): number {
  if (!s) return NaN;
  // "YYYY-MM-DDTHH:MM[:SS]" without an offset is local time.
  return new Date(s.length === 16 ? s + ":00" : s).getTime();
}
