import { lazy, Suspense, useState } from 'react';
import { Link } from 'react-router';
import { useQuery } from '@tanstack/react-query';
import { api, ApiError, formatDuration } from '../api';
import { ErrorBox, Loading, TableHead, useDocumentTitle } from '../components/common';

const SeriesChart = lazy(() => import('./SeriesChart'));

export interface Stats {
  window: string;
  total: number;
  by_state: Record<string, number>;
  failure_rate: number | null;
  p50_ms: number | null;
  p99_ms: number | null;
  failing: { integration: string; failed: number; total: number }[];
  series: ({ bucket: string } & Record<string, number | string>)[];
}

export function Overview() {
  useDocumentTitle('Overview');
  const [windowName, setWindow] = useState<'24h' | '7d'>('24h');
  const q = useQuery({
    queryKey: ['stats', windowName],
    queryFn: () => api<Stats>('/api/stats', { query: { window: windowName } }),
    refetchInterval: () => (document.hidden ? false : 30_000),
  });
  const missing = q.error instanceof ApiError && q.error.status === 404;
  const s = q.data;
  return (
    <div className="page">
      <div className="page-head">
        <h1>Overview</h1>
        <div className="segmented" role="group" aria-label="Window">
          {(['24h', '7d'] as const).map((w) => (
            <button key={w} type="button" aria-pressed={windowName === w} onClick={() => setWindow(w)}>
              {w === '24h' ? 'Last 24 hours' : 'Last 7 days'}
            </button>
          ))}
        </div>
      </div>
      {q.isLoading ? <Loading /> : null}
      {missing ? (
        <div className="empty card">
          <h2>No statistics yet</h2>
          <p>This server does not provide execution statistics yet. The other pages work as usual:</p>
          <p>
            <Link to="/integrations">Integrations</Link> · <Link to="/executions">Executions</Link>
          </p>
        </div>
      ) : (
        <ErrorBox error={q.error} />
      )}
      {s ? (
        <>
          <div className="kpis">
            <div className="kpi card">
              <span className="kpi-label">Executions</span>
              <span className="kpi-value">{s.total}</span>
            </div>
            <div className="kpi card">
              <span className="kpi-label">Failure rate</span>
              <span className="kpi-value">{s.failure_rate === null || s.failure_rate === undefined ? '—' : `${(s.failure_rate * 100).toFixed(1)} %`}</span>
            </div>
            <div className="kpi card">
              <span className="kpi-label">p50 duration</span>
              <span className="kpi-value">{formatDuration(s.p50_ms)}</span>
            </div>
            <div className="kpi card">
              <span className="kpi-label">p99 duration</span>
              <span className="kpi-value">{formatDuration(s.p99_ms)}</span>
            </div>
          </div>
          <section aria-labelledby="by-state-h">
            <h2 id="by-state-h">By state</h2>
            <ul className="by-state">
              {Object.entries(s.by_state ?? {}).map(([state, n]) => (
                <li key={state}>
                  <Link to={`/executions?state=${state}`}>
                    <span className={`badge state-${state}`}>{state}</span> {n}
                  </Link>
                </li>
              ))}
            </ul>
          </section>
          <section aria-labelledby="series-h">
            <h2 id="series-h">{windowName === '24h' ? 'Per hour' : 'Per day'}</h2>
            {s.series?.length ? (
              <Suspense fallback={<Loading label="Loading the chart…" />}>
                <SeriesChart series={s.series} hours={windowName === '24h' ? 24 : 24 * 7} />
              </Suspense>
            ) : (
              <p className="muted">No executions in this window.</p>
            )}
          </section>
          <section aria-labelledby="failing-h">
            <h2 id="failing-h">Failing most</h2>
            {s.failing?.length ? (
              <table>
                <TableHead columns={['Integration', 'Failed', 'Of']} />
                <tbody>
                  {s.failing.map((f) => (
                    <tr key={f.integration}>
                      <td>
                        <Link to={`/executions?integration=${encodeURIComponent(f.integration)}&state=failed`}>{f.integration}</Link>
                      </td>
                      <td>{f.failed}</td>
                      <td>{f.total}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            ) : (
              <p className="muted">Nothing failed in this window.</p>
            )}
          </section>
        </>
      ) : null}
    </div>
  );
}
