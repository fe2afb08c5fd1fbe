import { useMemo, useState } from 'react';
import { Link } from 'react-router';
import { useQuery } from '@tanstack/react-query';
import { api, formatTime, type ExecutionSummary, type IntegrationSummary, type Page } from '../api';
import { useRole } from '../auth';
import { ErrorBox, Loading, StateBadge, TableHead, useDocumentTitle } from '../components/common';

function LastRun({ name, given }: { name: string; given?: IntegrationSummary["last_run"] }) {
  const q = useQuery({
    queryKey: ['executions', 'last', name],
    queryFn: () => api<Page<ExecutionSummary>>('/api/executions', { query: { integration: name, limit: 1 } }),
    enabled: given === undefined,
    staleTime: 30_000,
  });
  const last = given ?? q.data?.items[0];
  if (given === undefined && q.isLoading) return <span className="muted">…</span>;
  if (!last) return <span className="muted">never</span>;
  return (
    <span className="last-run">
      <Link to={`/executions/${last.id}`}>{formatTime(last.created_at)}</Link> <StateBadge state={last.state} />
    </span>
  );
}

export function IntegrationsPage() {
  useDocumentTitle('Integrations');
  const { canEdit } = useRole();
  const [search, setSearch] = useState('');
  const q = useQuery({ queryKey: ['integrations'], queryFn: () => api<Page<IntegrationSummary>>('/api/integrations') });
  const items = useMemo(() => {
    const s = search.trim().toLowerCase();
    return (q.data?.items ?? []).filter((i) => !s || i.name.toLowerCase().includes(s));
  }, [q.data, search]);
  return (
    <div className="page">
      <div className="page-head">
        <h1>Integrations</h1>
        {canEdit ? (
          <Link className="button primary" to="/integrations/new">
            New integration
          </Link>
        ) : null}
      </div>
      <div className="toolbar">
        <div className="field inline">
          <label htmlFor="int-search">Search by name</label>
          <input id="int-search" type="search" value={search} onChange={(e) => setSearch(e.target.value)} placeholder="Filter…" />
        </div>
      </div>
      <ErrorBox error={q.error} />
      {q.isLoading ? <Loading /> : null}
      {q.data && items.length === 0 ? (
        <p className="empty">{search ? 'No integration matches this search.' : 'No integrations yet. Apply a definition to create one.'}</p>
      ) : null}
      {items.length > 0 ? (
        <div className="table-wrap">
          <table>
            <TableHead columns={['Name', 'Enabled', 'Version', 'Last run', 'Updated']} />
            <tbody>
              {items.map((i) => (
                <tr key={i.name}>
                  <td>
                    <Link to={`/integrations/${encodeURIComponent(i.name)}`}>{i.name}</Link>
                  </td>
                  <td>{i.enabled ? 'yes' : <span className="badge">disabled</span>}</td>
                  <td>v{i.current_version}</td>
                  <td>
                    <LastRun name={i.name} given={i.last_run} />
                  </td>
                  <td>{formatTime(i.updated_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </div>
  );
}
