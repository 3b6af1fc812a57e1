// Opens a Temporal client connection from resolved settings; used by every CLI command and helper.
import { Client, Connection } from '@temporalio/client';
import type { TemporalSettings } from '../config/temporal';

export async function connectClient(settings: TemporalSettings, connectTimeout = '5s'): Promise<Client> {
  const connection = await Connection.connect({
    address: settings.address,
    connectTimeout,
    ...(settings.tls !== undefined && { tls: settings.tls }),
    ...(settings.apiKey !== undefined && { apiKey: settings.apiKey }),
  });
  return new Client({ connection, namespace: settings.namespace });
}
