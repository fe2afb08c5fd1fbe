import { Component, useEffect, useId, useMemo, useState, type ErrorInfo, type ReactNode } from 'react';
import * as Dialog from '@radix-ui/react-dialog';
import { ApiError, errorText, ROLES, roleAtLeast, type Role } from '../api';

export function ErrorBox({ error, title }: { error: unknown; title?: string }) {
  if (!error) return null;
  const code = error instanceof ApiError ? error.code : null;
  const message = error instanceof Error ? error.message : String(error);
  return (
    <div className="error-box" role="alert">
      <strong>{title ?? 'Something went wrong'}</strong>
      <div>
        {message}
        {code ? <code className="error-code">{code}</code> : null}
      </div>
    </div>
  );
}

export function Loading({ label = 'Loading…' }: { label?: string }) {
  return (
    <p className="muted" role="status">
      {label}
    </p>
  );
}

interface BoundaryState {
  error: Error | null;
}
export class ErrorBoundary extends Component<{ children: ReactNode; resetKey?: string }, BoundaryState> {
  state: BoundaryState = { error: null };
  static getDerivedStateFromError(error: Error): BoundaryState {
    return { error };
  }
  componentDidCatch(error: Error, info: ErrorInfo) {
    console.error('page error', error, info.componentStack);
  }
  componentDidUpdate(prev: { resetKey?: string }) {
    if (prev.resetKey !== this.props.resetKey && this.state.error) this.setState({ error: null });
  }
  render() {
    if (this.state.error) {
      return (
        <div className="page">
          <ErrorBox error={this.state.error} title="This page failed to render" />
          <button type="button" onClick={() => this.setState({ error: null })}>
            Try again
          </button>
        </div>
      );
    }
    return this.props.children;
  }
}

export function StateBadge({ state }: { state: string }) {
  return <span className={`badge state-${state}`}>{state.replace(/_/g, ' ')}</span>;
}

interface ModalProps {
  open: boolean;
  onOpenChange(open: boolean): void;
  title: string;
  description?: ReactNode;
  children: ReactNode;
}
export function Modal({ open, onOpenChange, title, description, children }: ModalProps) {
  return (
    <Dialog.Root open={open} onOpenChange={onOpenChange}>
      <Dialog.Portal>
        <Dialog.Overlay className="dialog-overlay" />
        <Dialog.Content className="dialog" aria-describedby={description ? undefined : undefined}>
          <Dialog.Title className="dialog-title">{title}</Dialog.Title>
          {description ? <Dialog.Description className="dialog-description">{description}</Dialog.Description> : <Dialog.Description className="sr-only">{title}</Dialog.Description>}
          {children}
        </Dialog.Content>
      </Dialog.Portal>
    </Dialog.Root>
  );
}

interface ConfirmProps {
  open: boolean;
  onOpenChange(open: boolean): void;
  title: string;
  description: ReactNode;
  confirmLabel: string;
  danger?: boolean;
  /** The user must type this to confirm. */
  typed?: string;
  onConfirm(): Promise<unknown> | void;
}
export function ConfirmDialog({ open, onOpenChange, title, description, confirmLabel, danger, typed, onConfirm }: ConfirmProps) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [text, setText] = useState('');
  const id = useId();
  useEffect(() => {
    if (open) {
      setError(null);
      setText('');
    }
  }, [open]);
  const ok = typed === undefined || text === typed;
  return (
    <Modal open={open} onOpenChange={onOpenChange} title={title} description={description}>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          if (!ok) return;
          setBusy(true);
          setError(null);
          try {
            await onConfirm();
            onOpenChange(false);
          } catch (err) {
            setError(err);
          } finally {
            setBusy(false);
          }
        }}
      >
        {typed !== undefined ? (
          <div className="field">
            <label htmlFor={id}>
              Type <code>{typed}</code> to confirm
            </label>
            <input id={id} value={text} onChange={(e) => setText(e.target.value)} autoComplete="off" autoFocus />
          </div>
        ) : null}
        <ErrorBox error={error} />
        <div className="dialog-actions">
          <Dialog.Close asChild>
            <button type="button">Keep it</button>
          </Dialog.Close>
          <button type="submit" className={danger ? 'danger' : 'primary'} disabled={busy || !ok}>
            {busy ? 'Working…' : confirmLabel}
          </button>
        </div>
      </form>
    </Modal>
  );
}

/** Pretty JSON, collapsible, with a search box that highlights matches. */
export function JsonView({ value, label, defaultOpen = true, searchable = true }: { value: unknown; label: string; defaultOpen?: boolean; searchable?: boolean }) {
  const [query, setQuery] = useState('');
  const id = useId();
  const text = useMemo(() => (value === undefined ? 'undefined' : JSON.stringify(value, null, 2)), [value]);
  const parts = useMemo(() => {
    if (!query) return [text];
    const out: ReactNode[] = [];
    const lower = text.toLowerCase();
    const q = query.toLowerCase();
    let i = 0;
    let n = 0;
    for (;;) {
      const j = lower.indexOf(q, i);
      if (j < 0) break;
      out.push(text.slice(i, j));
      out.push(<mark key={n++}>{text.slice(j, j + q.length)}</mark>);
      i = j + q.length;
      if (n > 500) break;
    }
    out.push(text.slice(i));
    return out;
  }, [text, query]);
  const matches = query ? (parts.length - 1) / 2 : 0;
  return (
    <details className="json-view" open={defaultOpen}>
      <summary>{label}</summary>
      {searchable && text.length > 80 ? (
        <div className="json-search">
          <label htmlFor={id} className="sr-only">
            Search {label}
          </label>
          <input id={id} type="search" placeholder={`Search ${label.toLowerCase()}`} value={query} onChange={(e) => setQuery(e.target.value)} />
          {query ? <span className="muted">{Math.floor(matches)} match(es)</span> : null}
        </div>
      ) : null}
      <pre className="code" aria-label={label}>
        {parts}
      </pre>
    </details>
  );
}

export function useDocumentTitle(title: string) {
  useEffect(() => {
    document.title = `${title} · Tessera`;
  }, [title]);
}

export function errorMessage(e: unknown) {
  return errorText(e);
}

/**
 * A table's header row: a column per label, then, when `actions`, an
 * unlabelled column for the row's buttons (named for screen readers).
 */
export function TableHead({ columns, actions = false }: { columns: string[]; actions?: boolean }) {
  return (
    <thead>
      <tr>
        {columns.map((c) => (
          <th scope="col" key={c}>
            {c}
          </th>
        ))}
        {actions ? (
          <th scope="col">
            <span className="sr-only">Actions</span>
          </th>
        ) : null}
      </tr>
    </thead>
  );
}

/** The roles a caller of `myRole` may give (never one above their own), as a labelled field. */
export function RoleField({ id, value, myRole, onChange }: { id: string; value: Role; myRole: Role | undefined; onChange(role: Role): void }) {
  return (
    <div className="field">
      <label htmlFor={id}>Role</label>
      <select id={id} value={value} onChange={(e) => onChange(e.target.value as Role)}>
        {ROLES.filter((r) => roleAtLeast(myRole, r)).map((r) => (
          <option key={r} value={r}>
            {r}
          </option>
        ))}
      </select>
    </div>
  );
}
