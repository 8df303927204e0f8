// One Connect transport to perfusiond (same origin), made once, with an
// interceptor that adds the bearer token and tells the app whether the
// network works. Typed clients come from the generated service descriptors.

import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { CaseService } from "./gen/perfusion/v1/case_pb";
import { ChartingService } from "./gen/perfusion/v1/charting_pb";
import { RecordService } from "./gen/perfusion/v1/record_pb";
import { ReviewService } from "./gen/perfusion/v1/review_pb";

/** Hooks the app sets: where the token comes from, and network health. */
export const net = {
  token: (): string | null => null,
  /** Called after every call: true when the server answered (even with an error), false when it could not be reached. */
  reached: (_ok: boolean): void => {},
};

/** Codes that mean "the server was not reached or not ready": try again later. */
export function isNetworkError(e: unknown): boolean {
  const c = ConnectError.from(e).code;
  return c === Code.Unavailable || c === Code.Unknown || c === Code.DeadlineExceeded || c === Code.Canceled || c === Code.Unimplemented;
}

const auth: Interceptor = (next) => async (req) => {
  const t = net.token();
  if (t) req.header.set("Authorization", `Bearer ${t}`);
  try {
    const res = await next(req);
    net.reached(true);
    return res;
  } catch (e) {
    net.reached(!isNetworkError(e));
    throw e;
  }
};

const transport = createConnectTransport({
  baseUrl: location.origin,
  useBinaryFormat: true,
  interceptors: [auth],
});

export const cases = createClient(CaseService, transport);
export const charting = createClient(ChartingService, transport);
export const records = createClient(RecordService, transport);
export const review = createClient(ReviewService, transport);

/** google.rpc.BadRequest field violations of an error, decoded by hand (two string fields). */
export function fieldViolations(e: ConnectError): { field: string; description: string }[] {
  const out: { field: string; description: string }[] = [];
  for (const d of e.details) {
    if (!("type" in d) || d.type !== "google.rpc.BadRequest") continue;
    try {
      const r = new BinaryReader(d.value);
      while (r.pos < r.len) {
        const [no, wt] = r.tag();
        if (no === 1 && wt === 2) {
          const v = new BinaryReader(r.bytes());
          let field = "";
          let description = "";
          while (v.pos < v.len) {
            const [n2, w2] = v.tag();
            if (n2 === 1) field = v.string();
            else if (n2 === 2) description = v.string();
            else v.skip(w2);
          }
          out.push({ field, description });
        } else r.skip(wt);
      }
    } catch {
      /* undecodable detail: the message still says what is wrong */
    }
  }
  return out;
}

/** The text a person sees for an error: the server's message and its field violations. */
export function errorText(e: unknown): string {
  if (!(e instanceof ConnectError)) return e instanceof Error ? e.message : String(e);
  if (isNetworkError(e) && e.code !== Code.Unimplemented) return "The server cannot be reached. Entries are kept on this tablet and sent when it is back.";
  const v = fieldViolations(e);
  const msg = e.rawMessage || Code[e.code];
  return v.length ? `${msg} (${v.map((x) => `${x.field}: ${x.description}`).join("; ")})` : msg;
}

export { Code, ConnectError };
