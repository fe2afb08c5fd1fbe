import { lazy, Suspense, useMemo, useState, type ReactNode } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, ApiError, apiPathOf, formatDuration, formatTime, type ApiAnalytics, type ApiCallStats, type ApiRoute, type ManagedApi } from '../api';
import { useRole } from '../auth';
import { ConfirmDialog, ErrorBox, JsonView, Loading, TableHead, useDocumentTitle } from '../components/common';
import type { ChartSeries } from './SeriesChart';
import { API_PAGES, authText, SunsetBadge } from './Apis';

const SeriesChart = lazy(() => import('./SeriesChart'));

/** Calls per bucket, stacked: those that answered without error, then the errors on top. */
const CALL_SERIES: ChartSeries[] = [
  { key: 'ok', label: 'calls without error', color: '#1a7f37' },
  { key: 'errors', label: 'errors', color: '#cf222e' },
];

function yesNo(v: unknown): ReactNode {
  return v === undefined || v === null || v === '' ? <span className="muted">no</span> : 'yes';
}

/** What a route runs: its integration, or the backend it forwards to. */
function RouteTarget({ route }: { route: ApiRoute }) {
  if (route.forward) {
    return (
      <>
        forwards to <code>{route.forward.url}</code>
        {route.forward.timeout ? <span className="muted"> (timeout {route.forward.timeout})</span> : null}
      </>
    );
  }
  if (route.integration) return <Link to={`/integrations/${encodeURIComponent(route.integration)}`}>{route.integration}</Link>;
  return <span className="muted">none</span>;
}

/** How callers authenticate, by the API's `auth`. */
function AuthText({ a }: { a: ManagedApi }) {
  const spec = a.definition.spec;
  switch (spec.auth ?? 'apiKey') {
    case 'none':
      return <>none: anyone may call it</>;
    case 'jwt':
      return (
        <>
          JWT from <code>{spec.jwt?.issuer ?? '?'}</code> (audiences: {(spec.jwt?.audiences ?? []).join(', ') || 'none'}) in <code>Authorization: Bearer</code>
        </>
      );
    default:
      return (
        <>
          {authText(a)} (<code>X-API-Key</code>)
        </>
      );
  }
}

function RouteRows({ route }: { route: ApiRoute }) {
  const [open, setOpen] = useState(false);
  const label = `${route.method} ${route.path}`;
  const detailId = `route-${route.method}-${route.path}`.replace(/[^A-Za-z0-9_-]/g, '_');
  const hasDetail = route.requestSchema !== undefined || !!route.request || !!route.response;
  return (
    <>
      <tr data-testid="api-route">
        <td>
          <span className="badge">{route.method}</span>
        </td>
        <td>
          <code>{route.path}</code>
        </td>
        <td>
          <RouteTarget route={route} />
        </td>
        <td>{yesNo(route.requestSchema)}</td>
        <td>{yesNo(route.request)}</td>
        <td>{yesNo(route.response)}</td>
        <td>
          {hasDetail ? (
            <button type="button" aria-expanded={open} aria-controls={detailId} onClick={() => setOpen((o) => !o)} aria-label={`${open ? 'Hide' : 'Show'} details of ${label}`}>
              {open ? 'Hide' : 'Details'}
            </button>
          ) : null}
        </td>
      </tr>
      {hasDetail && open ? (
        <tr id={detailId}>
          <td colSpan={7}>
            {route.requestSchema !== undefined ? <JsonView value={route.requestSchema} label={`Request schema of ${label}`} searchable={false} /> : null}
            {route.request ? (
              <>
                <h3>Request transform</h3>
                <pre className="code" aria-label={`Request transform of ${label}`}>
                  {route.request}
                </pre>
              </>
            ) : null}
            {route.response ? (
              <>
                <h3>Response transform</h3>
                <pre className="code" aria-label={`Response transform of ${label}`}>
                  {route.response}
                </pre>
              </>
            ) : null}
          </td>
        </tr>
      ) : null}
    </>
  );
}

/** `hour`, `6 hours`, `day`: a series' step as people say it. */
function stepText(seconds: number): string {
  if (seconds > 0 && seconds % 86_400 === 0) return seconds === 86_400 ? 'day' : `${seconds / 86_400} days`;
  if (seconds > 0 && seconds % 3_600 === 0) return seconds === 3_600 ? 'hour' : `${seconds / 3_600} hours`;
  return `${Math.round(seconds / 60)} minutes`;
}

function errorRate(s: ApiCallStats): string {
  return s.calls ? `${((s.errors / s.calls) * 100).toFixed(1)} %` : '—';
}

/** Calls, errors, error rate and latency per route or per consumer. */
function CallsTable({ label, first, rows }: { label: string; first: string; rows: { key: string; name: ReactNode; stats: ApiCallStats }[] }) {
  if (rows.length === 0) return <p className="muted">No calls in this window.</p>;
  return (
    <div className="table-wrap">
      <table aria-label={label}>
        <TableHead columns={[first, 'Calls', 'Errors', 'Error rate', 'p50', 'p99']} />
        <tbody>
          {rows.map((r) => (
            <tr key={r.key}>
              <th scope="row">{r.name}</th>
              <td>{r.stats.calls}</td>
              <td>{r.stats.errors}</td>
              <td>{errorRate(r.stats)}</td>
              <td>{formatDuration(r.stats.p50_ms)}</td>
              <td>{formatDuration(r.stats.p99_ms)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Analytics({ name }: { name: string }) {
  const [windowName, setWindow] = useState<'24h' | '7d'>('24h');
  const q = useQuery({
    queryKey: ['api', name, 'analytics', windowName],
    queryFn: () => api<ApiAnalytics>(`/api/apis/${encodeURIComponent(name)}/analytics`, { query: { window: windowName } }),
    refetchInterval: () => (document.hidden ? false : 30_000),
  });
  // Served by a server without the endpoint: say so rather than fail.
  const missing = q.error instanceof ApiError && q.error.status === 404 && q.error.code === 'not_found';
  const a = q.data;
  const points = useMemo(() => (a?.series ?? []).map((p) => ({ bucket: p.at, ok: Math.max(0, p.calls - p.errors), errors: p.errors })), [a]);
  const total = useMemo(() => (a?.routes ?? []).reduce((t, r) => ({ calls: t.calls + r.calls, errors: t.errors + r.errors, p50_ms: null, p99_ms: null }), { calls: 0, errors: 0, p50_ms: null, p99_ms: null } as ApiCallStats), [a]);
  return (
    <section aria-labelledby="analytics-h">
      <div className="page-head section-head">
        <h2 id="analytics-h">Analytics</h2>
        <div className="actions">
          <div className="segmented" role="group" aria-label="Analytics window">
            {(['24h', '7d'] as const).map((w) => (
              <button key={w} type="button" aria-pressed={windowName === w} onClick={() => setWindow(w)}>
                {w === '24h' ? 'Last 24 hours' : 'Last 7 days'}
              </button>
            ))}
          </div>
          <button type="button" onClick={() => q.refetch()} disabled={q.isFetching}>
            {q.isFetching ? 'Refreshing…' : 'Refresh'}
          </button>
        </div>
      </div>
      {q.isLoading ? <Loading /> : null}
      {missing ? <p className="muted">This server does not provide API analytics yet.</p> : <ErrorBox error={q.error} />}
      {a ? (
        <>
          <div className="kpis">
            <div className="kpi card">
              <span className="kpi-label">Calls</span>
              <span className="kpi-value">{total.calls}</span>
            </div>
            <div className="kpi card">
              <span className="kpi-label">Errors</span>
              <span className="kpi-value">{total.errors}</span>
            </div>
            <div className="kpi card">
              <span className="kpi-label">Error rate</span>
              <span className="kpi-value">{errorRate(total)}</span>
            </div>
          </div>
          <h3>Calls per {stepText(a.step_seconds)}</h3>
          {points.some((p) => p.ok || p.errors) ? (
            <Suspense fallback={<Loading label="Loading the chart…" />}>
              <SeriesChart series={points} hours={windowName === '24h' ? 24 : 24 * 7} step={a.step_seconds} keys={CALL_SERIES} unit="calls" label="Calls and errors over time" />
            </Suspense>
          ) : (
            <p className="muted">No calls in this window.</p>
          )}
          <h3>By route</h3>
          <CallsTable label="Calls by route" first="Route" rows={(a.routes ?? []).map((r) => ({ key: r.route, name: <code>{r.route}</code>, stats: r }))} />
          <h3>By consumer</h3>
          <CallsTable
            label="Calls by consumer"
            first="Consumer"
            rows={(a.consumers ?? []).map((c) => ({
              key: c.consumer ?? '\u0000none',
              name: c.consumer ?? <span className="muted">no consumer</span>,
              stats: c,
            }))}
          />
          {(a.consumers ?? []).some((c) => c.consumer === null) ? (
            <p className="muted small">“No consumer”: calls made without a consumer’s key (an API without auth, or refused before a key was known).</p>
          ) : null}
        </>
      ) : null}
    </section>
  );
}

export function ApiPage() {
  const { name = '' } = useParams();
  useDocumentTitle(name);
  const { canEdit } = useRole();
  const navigate = useNavigate();
  const qc = useQueryClient();
  const [deleting, setDeleting] = useState(false);
  const q = useQuery({ queryKey: ['api', name], queryFn: () => api<ManagedApi>(`/api/apis/${encodeURIComponent(name)}`) });
  const a = q.data;
  const spec = a?.definition.spec;
  return (
    <div className="page">
      <p className="crumbs">
        <Link to={API_PAGES}>APIs</Link> /
      </p>
      <div className="page-head">
        <h1>{name}</h1>
        {a && canEdit ? (
          <div className="actions">
            <button type="button" className="danger" onClick={() => setDeleting(true)}>
              Delete API
            </button>
          </div>
        ) : null}
      </div>
      <ErrorBox error={q.error} />
      {q.isLoading ? <Loading /> : null}
      {a && spec ? (
        <>
          {a.definition.metadata.description ? <p>{a.definition.metadata.description}</p> : null}
          <dl className="facts">
            <div>
              <dt>URL</dt>
              <dd>
                <code data-testid="api-url">{`${window.location.origin}${apiPathOf(a)}`}</code> ·{' '}
                <a href={`${apiPathOf(a)}/openapi.json`}>OpenAPI document</a>
              </dd>
            </div>
            <div>
              <dt>Auth</dt>
              <dd>
                <AuthText a={a} />
              </dd>
            </div>
            <div>
              <dt>CORS</dt>
              <dd>{spec.cors?.allowOrigins.length ? spec.cors.allowOrigins.join(', ') : <span className="muted">none</span>}</dd>
            </div>
            <div>
              <dt>Sunset</dt>
              <dd>{spec.sunset ? <SunsetBadge sunset={spec.sunset} /> : <span className="muted">none</span>}</dd>
            </div>
            <div>
              <dt>Revision</dt>
              <dd>{a.revision}</dd>
            </div>
            <div>
              <dt>Updated</dt>
              <dd>{formatTime(a.updated_at)}</dd>
            </div>
          </dl>
          <section aria-labelledby="routes-h">
            <h2 id="routes-h">Routes</h2>
            {(spec.routes ?? []).length === 0 ? (
              <p className="muted">No routes.</p>
            ) : (
              <div className="table-wrap">
                <table aria-label="Routes">
                  <TableHead columns={['Method', 'Path', 'Integration or backend', 'Request schema', 'Request transform', 'Response transform']} actions />
                  <tbody>
                    {spec.routes.map((r) => (
                      <RouteRows key={`${r.method} ${r.path}`} route={r} />
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </section>
          <Analytics name={name} />
          <ConfirmDialog
            open={deleting}
            onOpenChange={setDeleting}
            danger
            title={`Delete API ${name}?`}
            description={`${apiPathOf(a)} stops answering its consumers at once (404). The integrations its routes run, the consumers and their keys are kept.`}
            typed={name}
            confirmLabel="Delete API"
            onConfirm={async () => {
              await api(`/api/apis/${encodeURIComponent(name)}`, { method: 'DELETE' });
              qc.removeQueries({ queryKey: ['api', name] });
              await qc.invalidateQueries({ queryKey: ['apis'] });
              navigate(API_PAGES);
            }}
          />
        </>
      ) : null}
    </div>
  );
}
