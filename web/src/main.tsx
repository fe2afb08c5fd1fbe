import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { BrowserRouter } from 'react-router';
import { ApiError, tenantSlugFromHost } from './api';
import { AuthProvider } from './auth';
import { TenantApp } from './tenant/TenantApp';
import { PlatformApp } from './platform/PlatformApp';
import './styles.css';

const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      retry: (count, error) => !(error instanceof ApiError && error.status >= 400 && error.status < 500) && count < 2,
      refetchOnWindowFocus: false,
      staleTime: 5_000,
    },
  },
});

const slug = tenantSlugFromHost(window.location.hostname);
const kind = slug ? 'tenant' : 'platform';

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <BrowserRouter>
        <AuthProvider kind={kind}>{slug ? <TenantApp slug={slug} /> : <PlatformApp />}</AuthProvider>
      </BrowserRouter>
    </QueryClientProvider>
  </StrictMode>,
);
