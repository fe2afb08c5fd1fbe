import { Link } from 'react-router';
import { useQuery } from '@tanstack/react-query';
import { api, apiPathOf, formatTime, type ManagedApi, type Page } from '../api';
import { useRole } from '../auth';
import { ErrorBox, Loading, TableHead, useDocumentTitle } from '../components/common';

/**
 * Where the panel shows the managed APIs. Not `/apis`: on a tenant's host,
 * `/apis/...` is the gateway that serves them (`routes/mod.rs`), and the
 * node never answers it with the panel, so a reload or a link there would
 * get the gateway's 404 instead of this page.
 */
export const API_PAGES = '/managed-apis';

/** The panel's page of one API. */
export function apiPage(name: string): string {
  return `${API_PAGES}/${encodeURIComponent(name)}`;
}

/** An API's auth as people read it (`apiKey` when the definition says nothing). */
export function authText(a: ManagedApi): string {
  switch (a.definition.spec.auth ?? 'apiKey') {
    case 'none':
      return 'none';
    case 'jwt':
      return 'JWT';
    default:
      return 'API key';
  }
}

/** "deprecated" with the sunset date, for an API version that has one. */
export function SunsetBadge({ sunset }: { sunset?: string }) {
  if (!sunset) return null;
  const past = new Date(sunset).getTime() <= Date.now();
  return (
    <span className="badge state-queued" title={`Sunset ${formatTime(sunset)}`}>
      {past ? 'sunset' : 'deprecated'} · {formatTime(sunset)}
    </span>
  );
}

export function ApisPage() {
  useDocumentTitle('APIs');
  const { canEdit } = useRole();
  const q = useQuery({ queryKey: ['apis'], queryFn: () => api<Page<ManagedApi>>('/api/apis') });
  return (
    <div className="page">
      <div className="page-head">
        <h1>APIs</h1>
      </div>
      <p className="muted">
        Integrations published to partners: each route runs an integration and answers with its output, or forwards the call to a backend. Callers are
        consumers with their own keys, on a plan, or hold a token of the tenant’s identity provider.
      </p>
      <ErrorBox error={q.error} />
      {q.isLoading ? <Loading /> : null}
      {q.data && q.data.items.length === 0 ? (
        <p className="empty">
          No APIs yet. An API is created by applying a definition of <code>kind: Api</code>
          {canEdit ? (
            <>
              {' '}
              in the <Link to="/integrations/new">editor</Link> or through the API
            </>
          ) : null}
          .
        </p>
      ) : null}
      {q.data && q.data.items.length ? (
        <div className="table-wrap">
          <table aria-label="APIs">
            <TableHead columns={['Name', 'Path', 'Routes', 'Auth', 'Deprecated', 'Updated']} />
            <tbody>
              {q.data.items.map((a) => (
                <tr key={a.name}>
                  <td>
                    <Link to={apiPage(a.name)}>{a.name}</Link>
                  </td>
                  <td>
                    <code>{apiPathOf(a)}</code>
                  </td>
                  <td>{a.definition.spec.routes?.length ?? 0}</td>
                  <td>{authText(a)}</td>
                  <td>{a.definition.spec.sunset ? <SunsetBadge sunset={a.definition.spec.sunset} /> : <span className="muted">no</span>}</td>
                  <td>{formatTime(a.updated_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </div>
  );
}
