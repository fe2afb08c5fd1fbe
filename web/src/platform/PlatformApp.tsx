import { Route, Routes } from 'react-router';
import { RequireAuth, useAuth } from '../auth';
import { Layout } from '../components/Layout';
import { SignIn } from '../components/SignIn';
import { NotFound } from '../components/NotFound';
import { TenantsPage } from './Tenants';
import { TenantDetail } from './TenantDetail';
import { ClusterPage } from './Cluster';
import { PlatformAuditPage } from './Audit';

export function PlatformApp() {
  const { email } = useAuth();
  return (
    <Routes>
      <Route path="/signin" element={<SignIn heading="Platform console: sign in as a platform owner" />} />
      <Route
        element={
          <RequireAuth>
            <Layout
              brand={
                <>
                  <strong>Tessera</strong> <span className="muted">platform console</span>
                </>
              }
              nav={[
                { to: '/', label: 'Tenants', end: true },
                { to: '/cluster', label: 'Cluster' },
                { to: '/audit', label: 'Audit' },
              ]}
              who={<span>{email}</span>}
            />
          </RequireAuth>
        }
      >
        <Route index element={<TenantsPage />} />
        <Route path="tenants/:slug" element={<TenantDetail />} />
        <Route path="cluster" element={<ClusterPage />} />
        <Route path="audit" element={<PlatformAuditPage />} />
        <Route path="*" element={<NotFound />} />
      </Route>
    </Routes>
  );
}
