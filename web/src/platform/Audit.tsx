import { AuditTrail } from '../components/AuditTrail';
import { useDocumentTitle } from '../components/common';

export function PlatformAuditPage() {
  useDocumentTitle('Audit');
  return (
    <AuditTrail
      base="/api/platform/audit"
      queryKey={['platform', 'audit']}
      exportName="platform"
      intro={
        <p className="muted">
          Changes to the platform (tenants, clusters, domains, owners), newest first. A tenant&apos;s own changes are in the audit trail of its panel. Each record
          is signed and chained to the one before; <em>Verify chain</em> checks that none was altered or removed.
        </p>
      }
    />
  );
}
