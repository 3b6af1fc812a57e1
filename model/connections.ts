// The two databases of a migration, by name. Workflows only ever carry the name; each process
// resolves it to connection settings from its own environment (config/connections.ts).

export const CONNECTION_NAMES = ['old', 'new'] as const;
export type ConnectionName = (typeof CONNECTION_NAMES)[number];

export interface ResolvedConnection {
  name: ConnectionName;
  connectionString: string;
  /** The same URL without its password, safe for logs and errors. */
  display: string;
  /** Where it came from, for messages: "OLD_DATABASE_URL" or "config old.url". */
  source: string;
}
