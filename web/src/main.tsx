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

/**
 * Which face this host shows: the server says (`GET /api/host`), whatever
 * the base domain's shape; the host name's shape is only the fallback when
 * it cannot be asked.
 */
async function hostSlug(): Promise<string | null> {
  try {
    const response = await fetch('/api/host', { headers: { accept: 'application/json' } });
    if (response.ok) {
      const body = (await response.json()) as { kind: string; tenant?: string };
      return body.kind === 'tenant' && body.tenant ? body.tenant : null;
    }
  } catch {
    // fall through to the name's shape
  }
  return tenantSlugFromHost(window.location.hostname);
}

hostSlug().then((slug) => {
  createRoot(document.getElementById('root')!).render(
    <StrictMode>
      <QueryClientProvider client={queryClient}>
        <BrowserRouter>
          <AuthProvider kind={slug ? 'tenant' : 'platform'}>{slug ? <TenantApp slug={slug} /> : <PlatformApp />}</AuthProvider>
        </BrowserRouter>
      </QueryClientProvider>
    </StrictMode>,
  );
});
