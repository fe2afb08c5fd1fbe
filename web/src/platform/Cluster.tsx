import { useState } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, formatTime } from '../api';
import { ConfirmDialog, ErrorBox, Loading, TableHead, useDocumentTitle } from '../components/common';

interface ClusterNode {
  id: string;
  address: string;
  version: string;
  state: string;
  alive: boolean;
  started_at: string;
  heartbeat_at: string;
  tenants: number;
  queue_depth: number | null;
}
/** A cluster of the platform's directory (`GET /api/platform/clusters`). */
interface DirectoryCluster {
  id: string;
  name: string;
  kind: string;
  partner: string | null;
  state: string;
  database: string;
  broker: boolean;
  tenants: number;
}
interface Cluster {
  cluster: string;
  nodes: ClusterNode[];
  leases: { tenant: string; node: string; epoch: number; expires_at: string }[];
  queues?: unknown;
}

export function ClusterPage() {
  useDocumentTitle('Cluster');
  const qc = useQueryClient();
  const q = useQuery({ queryKey: ['platform', 'cluster'], queryFn: () => api<Cluster>('/api/platform/cluster'), refetchInterval: () => (document.hidden ? false : 5000) });
  const [draining, setDraining] = useState<ClusterNode | null>(null);
  const all = useQuery({ queryKey: ['platform', 'clusters'], queryFn: () => api<{ items: DirectoryCluster[] }>('/api/platform/clusters') });
  const setState = async (id: string, action: 'drain' | 'activate') => {
    await api(`/api/platform/clusters/${id}/${action}`, { method: 'POST' });
    await qc.invalidateQueries({ queryKey: ['platform', 'clusters'] });
  };
  const c = q.data;
  return (
    <div className="page">
      <div className="page-head">
        <h1>Cluster {c ? <span className="muted">{c.cluster}</span> : null}</h1>
        <p className="muted">Updates every 5 s</p>
      </div>
      <ErrorBox error={q.error ?? all.error} />
      {all.data ? (
        <section aria-labelledby="clusters-h">
          <h2 id="clusters-h">Clusters</h2>
          <div className="table-wrap">
            <table data-testid="clusters">
              <TableHead columns={['Cluster', 'Kind', 'Partner', 'State', 'Tenants', 'Database', 'Broker']} actions />
              <tbody>
                {all.data.items.map((k) => (
                  <tr key={k.id}>
                    <th scope="row">{k.id}</th>
                    <td>{k.kind}</td>
                    <td>{k.partner ?? '—'}</td>
                    <td>{k.state}</td>
                    <td>{k.tenants}</td>
                    <td className="mono small">{k.database}</td>
                    <td>{k.broker ? 'yes' : 'none'}</td>
                    <td>
                      {k.state === 'active' ? (
                        <button type="button" onClick={() => setState(k.id, 'drain')} aria-label={`Stop placing tenants on ${k.id}`}>
                          Drain
                        </button>
                      ) : (
                        <button type="button" onClick={() => setState(k.id, 'activate')} aria-label={`Place tenants on ${k.id} again`}>
                          Activate
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </section>
      ) : null}
      {q.isLoading ? <Loading /> : null}
      {c ? (
        <>
          <section aria-labelledby="nodes-h">
            <h2 id="nodes-h">Nodes</h2>
            <div className="table-wrap">
              <table>
                <TableHead columns={['Node', 'Address', 'Health', 'State', 'Tenants', 'Queue depth', 'Heartbeat', 'Version']} actions />
                <tbody>
                  {c.nodes.map((n) => (
                    <tr key={n.id}>
                      <td className="mono small">{n.id}</td>
                      <td>{n.address}</td>
                      <td>{n.alive ? <span className="badge state-succeeded">alive</span> : <span className="badge state-failed">down</span>}</td>
                      <td>{n.state}</td>
                      <td>{n.tenants}</td>
                      <td>{n.queue_depth ?? '—'}</td>
                      <td>{formatTime(n.heartbeat_at)}</td>
                      <td>{n.version}</td>
                      <td>
                        {n.alive && n.state === 'active' ? (
                          <button type="button" onClick={() => setDraining(n)} aria-label={`Drain ${n.address}`}>
                            Drain
                          </button>
                        ) : null}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </section>
          <section aria-labelledby="leases-h">
            <h2 id="leases-h">Tenant leases</h2>
            <div className="table-wrap">
              <table>
                <TableHead columns={['Tenant', 'Node', 'Epoch', 'Expires']} />
                <tbody>
                  {c.leases.map((l) => (
                    <tr key={l.tenant}>
                      <td>{l.tenant}</td>
                      <td className="mono small">{c.nodes.find((n) => n.id === l.node)?.address ?? l.node}</td>
                      <td>{l.epoch}</td>
                      <td>{formatTime(l.expires_at)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </section>
        </>
      ) : null}
      <ConfirmDialog
        open={draining !== null}
        onOpenChange={(o) => !o && setDraining(null)}
        danger
        title={`Drain node ${draining?.address}?`}
        description="It hands its tenants over to other nodes as their executions finish, and takes no new work."
        confirmLabel="Drain"
        onConfirm={async () => {
          await api(`/api/platform/nodes/${draining!.id}/drain`, { method: 'POST' });
          await qc.invalidateQueries({ queryKey: ['platform', 'cluster'] });
        }}
      />
    </div>
  );
}
