import { useMemo } from 'react';
import { Link, useSearchParams } from 'react-router';
import { useInfiniteQuery } from '@tanstack/react-query';
import { api, durationMs, EXECUTION_STATES, formatDuration, formatTime, type ExecutionSummary, type Page } from '../api';
import { ErrorBox, Loading, StateBadge, TableHead, useDocumentTitle } from '../components/common';

/** A `datetime-local` value (the browser's time zone) as RFC 3339, or nothing. */
function isoOf(local: string): string | undefined {
  if (!local) return undefined;
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

export function ExecutionsPage() {
  useDocumentTitle('Executions');
  const [params, setParams] = useSearchParams();
  const integration = params.get('integration') ?? '';
  const state = params.get('state') ?? '';
  const since = params.get('since') ?? '';
  const set = (k: string, v: string) => {
    const next = new URLSearchParams(params);
    if (v) next.set(k, v);
    else next.delete(k);
    setParams(next, { replace: true });
  };
  const until = params.get('until') ?? '';
  const sinceIso = useMemo(() => isoOf(since), [since]);
  const untilIso = useMemo(() => isoOf(until), [until]);
  const q = useInfiniteQuery({
    queryKey: ['executions', 'list', { integration, state, since: sinceIso, until: untilIso }],
    queryFn: ({ pageParam, signal }) =>
      api<Page<ExecutionSummary>>('/api/executions', { query: { integration: integration || undefined, state: state || undefined, since: sinceIso, until: untilIso, limit: 100, cursor: pageParam || undefined }, signal }),
    initialPageParam: '',
    getNextPageParam: (last) => last.next_cursor || undefined,
    refetchInterval: () => (document.hidden ? false : 2000),
    refetchIntervalInBackground: false,
    staleTime: 0,
  });
  const rows = q.data?.pages.flatMap((p) => p.items) ?? [];
  return (
    <div className="page">
      <div className="page-head">
        <h1>Executions</h1>
        <p className="muted live" aria-live="off">
          Updates every 2 s
        </p>
      </div>
      <form className="toolbar" onSubmit={(e) => e.preventDefault()} aria-label="Filters">
        <div className="field inline">
          <label htmlFor="f-integration">Integration</label>
          <input id="f-integration" type="search" defaultValue={integration} onBlur={(e) => set('integration', e.target.value.trim())} onKeyDown={(e) => e.key === 'Enter' && set('integration', (e.target as HTMLInputElement).value.trim())} placeholder="any" />
        </div>
        <div className="field inline">
          <label htmlFor="f-state">State</label>
          <select id="f-state" value={state} onChange={(e) => set('state', e.target.value)}>
            <option value="">any</option>
            {EXECUTION_STATES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </div>
        <div className="field inline">
          <label htmlFor="f-since">Since</label>
          <input id="f-since" type="datetime-local" value={since} onChange={(e) => set('since', e.target.value)} />
        </div>
        <div className="field inline">
          <label htmlFor="f-until">Until</label>
          <input id="f-until" type="datetime-local" value={until} onChange={(e) => set('until', e.target.value)} />
        </div>
      </form>
      <ErrorBox error={q.error} />
      {q.isLoading ? <Loading /> : null}
      {q.data && rows.length === 0 ? <p className="empty">No executions match.</p> : null}
      {rows.length > 0 ? (
        <div className="table-wrap">
          <table className="executions">
            <TableHead columns={['Execution', 'Integration', 'Version', 'State', 'Created', 'Duration']} />
            <tbody>
              {rows.map((e) => (
                <tr key={e.id} data-testid="execution-row">
                  <td className="mono small">
                    <Link to={`/executions/${e.id}`}>{e.id}</Link>
                  </td>
                  <td>
                    <Link to={`/integrations/${encodeURIComponent(e.integration)}`}>{e.integration}</Link>
                  </td>
                  <td>v{e.version}</td>
                  <td>
                    <StateBadge state={e.state} />
                  </td>
                  <td>{formatTime(e.created_at)}</td>
                  <td>{formatDuration(durationMs(e.started_at, e.finished_at))}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {q.hasNextPage ? (
        <button type="button" onClick={() => q.fetchNextPage()} disabled={q.isFetchingNextPage}>
          {q.isFetchingNextPage ? 'Loading…' : 'Load more'}
        </button>
      ) : null}
    </div>
  );
}
