/**
 * Which column of an access log holds what. A preset names the columns of a known export; a
 * mapping (flags or a small JSON file) names them for any other. `app` and a destination (`host`
 * or `ip`) are required; the rest are used where present.
 */
export const FIELDS = ['app', 'host', 'ip', 'port', 'protocol', 'count', 'device', 'user', 'time'] as const;
export type Field = (typeof FIELDS)[number];
export type Mapping = Partial<Record<Field, string | string[]>>;

export const PRESETS: Record<string, Mapping> = {
  // Palo Alto Cortex XDR network events, as exported for NuAppFirewall's catalog.
  'cortex-xdr': {
    app: 'causality_actor_process_image_path',
    ip: 'action_remote_ip',
    host: 'dst_action_external_hostname',
    port: 'action_remote_port',
    count: 'count_endpoints',
    device: ['agent_hostname', 'agent_id', 'endpoint_name'],
    user: ['actor_effective_username', 'action_username', 'user_name'],
    time: ['_time', 'event_timestamp', 'insert_timestamp'],
    protocol: 'action_network_protocol',
  },
  // Tollgate's own names, also what JSON Lines logs use by default.
  tollgate: { app: 'app', host: 'host', ip: 'ip', port: 'port', protocol: 'protocol', count: 'count', device: 'device', user: 'user', time: 'time' },
};

/** Column positions for one file: index per field, -1 where absent. */
export type Columns = Record<Field, number>;

/** Resolves a mapping against a header row; throws a message naming what is missing. */
export function resolveColumns(header: string[], mapping: Mapping, file: string): Columns {
  const pos = new Map(header.map((h, i) => [h.trim(), i]));
  const cols = {} as Columns;
  for (const f of FIELDS) {
    const names = mapping[f] === undefined ? [] : Array.isArray(mapping[f]) ? (mapping[f] as string[]) : [mapping[f] as string];
    cols[f] = names.map((n) => pos.get(n)).find((i) => i !== undefined) ?? -1;
  }
  const missing = [];
  if (cols.app < 0) missing.push(`app (${[mapping.app ?? '?'].flat().join(' or ')})`);
  if (cols.host < 0 && cols.ip < 0) missing.push(`host or ip (${[mapping.host ?? '?', mapping.ip ?? '?'].flat().join(' / ')})`);
  if (missing.length) throw new Error(`${file}: the header has no column for ${missing.join(', ')}; header: ${header.join(', ')}`);
  return cols;
}
