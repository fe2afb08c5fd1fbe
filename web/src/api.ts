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

export async function api<T = unknown>(path: string, opts: RequestOptions = {}): Promise<T> {
  if (!path.startsWith('/')) throw new Error('API paths are relative to this origin');
  const headers: Record<string, string> = { accept: 'application/json' };
  if (token && !opts.anonymous) headers.authorization = `Bearer ${token}`;
  let body: BodyInit | undefined;
  if (opts.raw) {
    headers['content-type'] = opts.raw.contentType;
    body = opts.raw.text;
  } else if (opts.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  let res: Response;
  try {
    res = await fetch(buildPath(path, opts.query), {
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
  const text = await res.text();
  let data: unknown = undefined;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const errBody =
      data && typeof data === 'object' && 'error' in (data as object)
        ? ((data as { error: ApiErrorBody }).error)
        : { code: `http_${res.status}`, message: typeof data === 'string' && data ? data.slice(0, 300) : res.statusText || `HTTP ${res.status}` };
    const err = new ApiError(res.status, errBody);
    if (res.status === 401 && !opts.anonymous && token) onUnauthorized?.();
    throw err;
  }
  return data as T;
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
