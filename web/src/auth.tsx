import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { useQueryClient } from '@tanstack/react-query';
import { Navigate, useLocation, useNavigate } from 'react-router';
import { api, setToken, setUnauthorizedHandler, type LoginResponse, type Me, type Role } from './api';

export type PanelKind = 'tenant' | 'platform';

interface AuthState {
  kind: PanelKind;
  token: string | null;
  me: Me | null;
  email: string | null;
  role: Role | undefined;
  expired: boolean;
  signIn(email: string, password: string): Promise<void>;
  signOut(): void;
}

const AuthContext = createContext<AuthState | null>(null);

export function useAuth(): AuthState {
  const ctx = useContext(AuthContext);
  if (!ctx) throw new Error('useAuth outside AuthProvider');
  return ctx;
}

export function AuthProvider({ kind, children }: { kind: PanelKind; children: ReactNode }) {
  const [token, setTok] = useState<string | null>(null);
  const [me, setMe] = useState<Me | null>(null);
  const [email, setEmail] = useState<string | null>(null);
  const [expired, setExpired] = useState(false);
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const location = useLocation();

  const clear = useCallback(() => {
    setToken(null);
    setTok(null);
    setMe(null);
    setEmail(null);
    queryClient.cancelQueries();
    queryClient.clear();
  }, [queryClient]);

  const here = location.pathname + location.search;
  useEffect(() => {
    setUnauthorizedHandler(() => {
      clear();
      setExpired(true);
      const next = window.location.pathname + window.location.search;
      navigate(`/signin?next=${encodeURIComponent(next.startsWith('/signin') ? '/' : next)}`, { replace: true });
    });
    return () => setUnauthorizedHandler(null);
  }, [clear, navigate, here]);

  const signIn = useCallback(
    async (mail: string, password: string) => {
      const res = await api<LoginResponse>('/api/auth/login', { body: { email: mail, password }, anonymous: true });
      setToken(res.token);
      try {
        if (kind === 'tenant') {
          const who = await api<Me>('/api/me');
          setMe(who);
        }
      } catch (e) {
        setToken(null);
        throw e;
      }
      setEmail(mail);
      setExpired(false);
      setTok(res.token);
    },
    [kind],
  );

  const signOut = useCallback(() => {
    clear();
    setExpired(false);
    navigate('/signin', { replace: true });
  }, [clear, navigate]);

  const value = useMemo<AuthState>(
    () => ({ kind, token, me, email, role: me?.role, expired, signIn, signOut }),
    [kind, token, me, email, expired, signIn, signOut],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function RequireAuth({ children }: { children: ReactNode }) {
  const { token } = useAuth();
  const location = useLocation();
  if (!token) {
    const next = location.pathname + location.search;
    return <Navigate to={`/signin?next=${encodeURIComponent(next)}`} replace />;
  }
  return <>{children}</>;
}

export function useRole() {
  const { role } = useAuth();
  const rank = role ? ['viewer', 'editor', 'admin', 'owner'].indexOf(role) : -1;
  return { role, canEdit: rank >= 1, isAdmin: rank >= 2 };
}
