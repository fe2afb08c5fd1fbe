import { useRole } from '../auth';
import { AuditTrail } from '../components/AuditTrail';
import { useDocumentTitle } from '../components/common';

export function AuditPage() {
  useDocumentTitle('Audit');
  const { isAdmin } = useRole();
  if (!isAdmin) {
    return (
      <div className="page">
        <h1>Audit trail</h1>
        <p>Only admins read the audit trail.</p>
      </div>
    );
  }
  return (
    <AuditTrail
      base="/api/audit"
      queryKey={['audit']}
      exportName="tenant"
      intro={
        <p className="muted">
          Every change to this tenant: who made it, when, from where and how (API, CLI or panel), newest first. Each record is signed and chained to the one
          before; <em>Verify chain</em> checks that none was altered or removed.
        </p>
      }
    />
  );
}
