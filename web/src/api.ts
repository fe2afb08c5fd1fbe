// The API client: relative URLs only (same origin), the bearer token kept in
// memory (never in storage or cookies).

export interface ApiErrorBody {
  code: string;
  message: string;
  errors?: DefinitionError[];
  [key: string]: unknown;
}

export interface DefinitionError {
  document: number | null;
  path: string;
  line: number | null;
  column: number | null;
  message: string;
}

export class ApiError extends Error {
  status: number;
  code: string;
  body: ApiErrorBody;
  constructor(status: number, body: ApiErrorBody) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.code = body.code || `http_${status}`;
    this.body = body;
  }
}

let token: string | null = null;
let onUnauthorized: (() => void) | null = null;

export function getToken(): string | null {
  return token;
}
export function setToken(t: string | null): void {
  token = t;
}
export function setUnauthorizedHandler(handler: (() => void) | null): void {
  onUnauthorized = handler;
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  /** Sent as is with this content type (e.g. YAML). */
  raw?: { contentType: string; text: string };
  query?: Record<string, string | number | boolean | null | undefined>;
  signal?: AbortSignal;
  /** Don't treat a 401 as an expired session (the sign-in call). */
  anonymous?: boolean;
}

export function buildPath(path: string, query?: RequestOptions['query']): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== undefined && v !== null && v !== '') params.set(k, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}${path.includes('?') ? '&' : '?'}${qs}` : path;
}

/**
 * Sent with every request: the server records a change made through the
 * panel as `via: panel` in the audit trail.
 */
export const CLIENT_HEADER = 'x-tessera-client';
export const CLIENT_NAME = 'panel';

/** One request to this origin, with the token and the panel's headers; the network failing is an `ApiError` (status 0). */
async function send(path: string, opts: RequestOptions, accept: string): Promise<Response> {
  if (!path.startsWith('/')) throw new Error('API paths are relative to this origin');
  const headers: Record<string, string> = { accept, [CLIENT_HEADER]: CLIENT_NAME };
  if (token && !opts.anonymous) headers.authorization = `Bearer ${token}`;
  let body: BodyInit | undefined;
  if (opts.raw) {
    headers['content-type'] = opts.raw.contentType;
    body = opts.raw.text;
  } else if (opts.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  try {
    return await fetch(buildPath(path, opts.query), {
      method: opts.method ?? (body !== undefined ? 'POST' : 'GET'),
      headers,
      body,
      signal: opts.signal,
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new ApiError(0, { code: 'network_error', message: `The server could not be reached (${(e as Error).message})` });
  }
}

function parseBody(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The error of a response that is not OK; a 401 ends the session. */
function failure(res: Response, data: unknown, opts: RequestOptions): ApiError {
  const errBody =
    data && typeof data === 'object' && 'error' in (data as object)
      ? ((data as { error: ApiErrorBody }).error)
      : { code: `http_${res.status}`, message: typeof data === 'string' && data ? data.slice(0, 300) : res.statusText || `HTTP ${res.status}` };
  const err = new ApiError(res.status, errBody);
  if (res.status === 401 && !opts.anonymous && token) onUnauthorized?.();
  return err;
}

export async function api<T = unknown>(path: string, opts: RequestOptions = {}): Promise<T> {
  const res = await send(path, opts, 'application/json');
  const data = parseBody(await res.text());
  if (!res.ok) throw failure(res, data, opts);
  return data as T;
}

export interface Download {
  blob: Blob;
  /** From the response's Content-Disposition, when it names one. */
  filename: string | null;
}

/**
 * A file the API serves (an export), fetched with the token like any call:
 * the token lives in this page's memory, so a plain link could not send it.
 */
export async function download(path: string, opts: Pick<RequestOptions, 'query' | 'signal'> & { accept?: string } = {}): Promise<Download> {
  const res = await send(path, opts, opts.accept ?? '*/*');
  if (!res.ok) throw failure(res, parseBody(await res.text()), opts);
  const disposition = res.headers.get('content-disposition') ?? '';
  const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
  let filename: string | null = null;
  if (match) {
    try {
      filename = decodeURIComponent(match[1]!);
    } catch {
      filename = match[1]!;
    }
  }
  return { blob: await res.blob(), filename };
}

/** Offers `blob` to the user as a file download named `filename`. */
export function saveBlob(blob: Blob, filename: string): void {
  const href = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = href;
  a.download = filename;
  a.rel = 'noopener';
  a.style.display = 'none';
  document.body.appendChild(a);
  a.click();
  a.remove();
  // Revoked once the browser has taken the file.
  window.setTimeout(() => URL.revokeObjectURL(href), 10_000);
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) return `${e.message} (${e.code})`;
  if (e instanceof Error) return e.message;
  return String(e);
}

/** `acme.localhost`, or 4+ labels (`acme.eu1.example.com`): a tenant host. */
export function tenantSlugFromHost(hostname: string): string | null {
  const host = hostname.toLowerCase().replace(/\.$/, '');
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host) || host.includes(':')) return null;
  const labels = host.split('.');
  if (host.endsWith('.localhost') && labels.length >= 2) return labels[0]!;
  if (labels.length >= 4) return labels[0]!;
  return null;
}

// ---------------------------------------------------------------------------
// Shapes

export type Role = 'viewer' | 'editor' | 'admin' | 'owner';
export const ROLES: Role[] = ['viewer', 'editor', 'admin', 'owner'];
export function roleAtLeast(role: Role | undefined, min: Role): boolean {
  if (!role) return false;
  return ROLES.indexOf(role) >= ROLES.indexOf(min);
}

export interface Me {
  tenant: { id: string; slug: string; name: string };
  principal: { email?: string; id: string; kind: string; name?: string };
  role: Role;
}

export interface LoginResponse {
  token: string;
  token_type: string;
  expires_in: number;
}

export interface IntegrationSummary {
  name: string;
  enabled: boolean;
  current_version: number;
  created_at: string;
  updated_at: string;
  last_run?: { id: string; state: ExecutionState; created_at: string } | null;
}

export interface Definition {
  apiVersion: string;
  kind: string;
  metadata: { name: string; description?: string };
  spec: IntegrationSpec;
}
export interface IntegrationSpec {
  enabled?: boolean;
  triggers?: Record<string, unknown>[];
  steps?: StepDef[];
  on_error?: StepDef[];
  [k: string]: unknown;
}
export interface StepDef {
  name: string;
  on_error?: StepDef[];
  [k: string]: unknown;
}

export interface Integration {
  name: string;
  enabled: boolean;
  version: number;
  definition: Definition;
  created_at: string;
  updated_at: string;
}

export interface VersionSummary {
  version: number;
  created_at: string;
  created_by: string | null;
}

export type ExecutionState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export const EXECUTION_STATES: ExecutionState[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];

export interface ExecutionSummary {
  id: string;
  integration: string;
  version: number;
  state: ExecutionState;
  trigger: unknown;
  output: unknown;
  error: unknown;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  cancel_requested: boolean;
  retries: number;
}

export interface StepCheckpoint {
  path: string;
  state: string;
  attempt: number;
  input: unknown;
  output: unknown;
  error: unknown;
  started_at: string | null;
  finished_at: string | null;
}

export interface Execution extends ExecutionSummary {
  steps: StepCheckpoint[];
  parent_id?: string | null;
  children?: { id: string; step?: string; attempt?: number; state?: string }[];
}

export interface Page<T> {
  items: T[];
  next_cursor?: string | null;
}

export function isFinished(state: string): boolean {
  return state === 'succeeded' || state === 'failed' || state === 'cancelled';
}

export function durationMs(start: string | null | undefined, end: string | null | undefined): number | null {
  if (!start || !end) return null;
  return new Date(end).getTime() - new Date(start).getTime();
}

export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms * 10) / 10} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  const m = Math.floor(ms / 60_000);
  return `${m} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export function formatTime(t: string | null | undefined): string {
  if (!t) return '—';
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return t;
  return d.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
}

const TOP_ORDER = ['apiVersion', 'kind', 'metadata', 'spec', 'name', 'description', 'enabled', 'triggers', 'steps', 'on_error'];
/** The same value with keys in a reading order (`name` first, `spec` after `metadata`) for display as YAML. */
export function readingOrder(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(readingOrder);
  if (!value || typeof value !== 'object') return value;
  const entries = Object.entries(value as Record<string, unknown>);
  const rank = (k: string) => {
    const i = TOP_ORDER.indexOf(k);
    return i < 0 ? TOP_ORDER.length : i;
  };
  entries.sort((a, b) => rank(a[0]) - rank(b[0]));
  return Object.fromEntries(entries.map(([k, v]) => [k, readingOrder(v)]));
}

/** A `datetime-local` value (the browser's time zone) as RFC 3339 in UTC, or nothing. */
export function isoOfLocal(local: string): string | undefined {
  if (!local) return undefined;
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

export type AuditActorKind = 'user' | 'api_key' | 'owner' | 'operator';
export type AuditVia = 'api' | 'cli' | 'panel' | 'operator';

/** One record of an audit trail (a tenant's or the platform's). */
export interface AuditRecord {
  seq: number;
  at: string;
  actor_kind: AuditActorKind | string;
  actor_id: string | null;
  actor_name: string;
  address: string | null;
  via: AuditVia | string;
  request_id: string | null;
  action: string;
  resource_kind: string;
  resource_name: string;
  detail: unknown;
  key_id: string;
  mac: string;
}

export interface AuditPage {
  items: AuditRecord[];
  /** Pass as `before` for the next (older) page; null on the last. */
  next_before: number | null;
}

export interface AuditVerification {
  ok: boolean;
  records: number;
  head_seq: number;
  head_mac: string;
  problems: { seq: number; problem: string }[];
}

/** The filters of an audit listing and export, as the API names them. */
export interface AuditFilters {
  actor?: string;
  action?: string;
  resource_kind?: string;
  resource?: string;
  /** RFC 3339. */
  since?: string;
  until?: string;
}

// ---------------------------------------------------------------------------
// Managed APIs (docs/api-management.md)

export type ApiAuth = 'apiKey' | 'jwt' | 'none';

/** With auth `jwt`: whose tokens are accepted, checked against the issuer's keys. */
export interface ApiJwt {
  issuer: string;
  audiences: string[];
  jwksUrl: string;
  /** The claim naming the consumer; `sub` when absent. */
  consumerClaim?: string;
}

/** Browsers allowed to call the API from other origins. */
export interface ApiCors {
  allowOrigins: string[];
  allowHeaders?: string[];
  maxAgeSeconds?: number;
  allowCredentials?: boolean;
}

/** A backend a route forwards its calls to, through the egress gate. */
export interface ApiForward {
  url: string;
  /** e.g. `10s`. */
  timeout?: string;
}

/** Either `integration` or `forward`. */
export interface ApiRoute {
  method: string;
  path: string;
  integration?: string;
  forward?: ApiForward;
  /** JSON Schema of the body. */
  requestSchema?: unknown;
  /** jq over `{body, params, query, headers}`. */
  request?: string;
  /** jq over the integration's output, or the backend's JSON. */
  response?: string;
}

export interface ApiDefinition {
  apiVersion: string;
  kind: 'Api';
  metadata: { name: string; description?: string };
  spec: {
    basePath: string;
    version: string;
    /** `apiKey` when absent. */
    auth?: ApiAuth;
    /** Only with auth `jwt`. */
    jwt?: ApiJwt;
    cors?: ApiCors;
    /** RFC 3339: deprecated until then. */
    sunset?: string;
    routes: ApiRoute[];
  };
}

export interface ManagedApi {
  name: string;
  base_path: string;
  version: string;
  revision: number;
  definition: ApiDefinition;
  created_at: string;
  updated_at: string;
}

/** Where an API is served on this tenant's host: `/apis/<basePath>/<version>`. */
export function apiPathOf(a: Pick<ManagedApi, 'base_path' | 'version'>): string {
  return `/apis/${a.base_path}/${a.version}`;
}

export interface ApiCallStats {
  calls: number;
  errors: number;
  p50_ms: number | null;
  p99_ms: number | null;
}

export interface ApiAnalytics {
  window: string;
  step_seconds: number;
  series: ({ at: string } & ApiCallStats)[];
  routes: ({ route: string } & ApiCallStats)[];
  /** `consumer` null: calls without one (auth none, or refused before a key was known). */
  consumers: ({ consumer: string | null } & ApiCallStats)[];
}

export interface Plan {
  name: string;
  description: string;
  rate_per_second: number;
  burst: number;
  quota: number | null;
  quota_period: 'day' | 'month' | null;
  created_at: string;
  updated_at: string;
}

export interface ConsumerKey {
  id: string;
  prefix: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
  /** In the answer that made the key only. */
  secret?: string;
}

export interface Consumer {
  id: string;
  name: string;
  plan: string;
  description: string;
  created_at: string;
  updated_at: string;
  keys: ConsumerKey[];
}
