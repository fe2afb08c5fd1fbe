import { lazy, Suspense } from 'react';
import { Route, Routes } from 'react-router';
import { RequireAuth, useAuth } from '../auth';
import { Layout, type NavItem } from '../components/Layout';
import { SignIn } from '../components/SignIn';
import { Loading } from '../components/common';
import { Overview } from './Overview';
import { IntegrationsPage } from './Integrations';
import { IntegrationPage } from './Integration';
import { ExecutionsPage } from './Executions';
import { ExecutionPage } from './Execution';
import { ConnectionsPage } from './Connections';
import { VariablesPage } from './Variables';
import { UsersPage } from './Users';
import { ApiKeysPage } from './ApiKeys';
import { API_PAGES, ApisPage } from './Apis';
import { ApiPage } from './Api';
import { ConsumersPage } from './Consumers';
import { AuditPage } from './Audit';
import { NotFound } from '../components/NotFound';

const EditorPage = lazy(() => import('../editor/EditorPage'));

export function TenantApp({ slug }: { slug: string }) {
  const { me, role } = useAuth();
  const isAdmin = role === 'admin' || role === 'owner';
  const nav: NavItem[] = [
    { to: '/', label: 'Overview', end: true },
    { to: '/integrations', label: 'Integrations' },
    { to: '/executions', label: 'Executions' },
    { to: '/connections', label: 'Connections' },
    { to: '/variables', label: 'Variables' },
    { to: API_PAGES, label: 'APIs' },
    ...(isAdmin
      ? [
          { to: '/consumers', label: 'Consumers' },
          { to: '/users', label: 'Users' },
          { to: '/api-keys', label: 'API keys' },
          { to: '/audit', label: 'Audit' },
        ]
      : []),
  ];
  const who = me ? (
    <span>
      {me.principal.email ?? me.principal.name ?? me.principal.id} · <span className="badge">{me.role}</span>
    </span>
  ) : null;
  return (
    <Routes>
      <Route path="/signin" element={<SignIn heading={`Sign in to ${slug}`} />} />
      <Route
        element={
          <RequireAuth>
            <Layout brand={<><strong>Tessera</strong> <span className="muted">{me?.tenant.name || slug}</span></>} nav={nav} who={who} />
          </RequireAuth>
        }
      >
        <Route index element={<Overview />} />
        <Route path="integrations" element={<IntegrationsPage />} />
        <Route
          path="integrations/new"
          element={
            <Suspense fallback={<Loading label="Loading the editor…" />}>
              <EditorPage />
            </Suspense>
          }
        />
        <Route
          path="integrations/:name/edit"
          element={
            <Suspense fallback={<Loading label="Loading the editor…" />}>
              <EditorPage />
            </Suspense>
          }
        />
        <Route path="integrations/:name" element={<IntegrationPage />} />
        <Route path="executions" element={<ExecutionsPage />} />
        <Route path="executions/:id" element={<ExecutionPage />} />
        <Route path="connections" element={<ConnectionsPage />} />
        <Route path="variables" element={<VariablesPage />} />
        <Route path={API_PAGES} element={<ApisPage />} />
        <Route path={`${API_PAGES}/:name`} element={<ApiPage />} />
        <Route path="consumers" element={<ConsumersPage />} />
        <Route path="users" element={<UsersPage />} />
        <Route path="api-keys" element={<ApiKeysPage />} />
        <Route path="audit" element={<AuditPage />} />
        <Route path="*" element={<NotFound />} />
      </Route>
    </Routes>
  );
}
