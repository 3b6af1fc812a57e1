// Where the Temporal server is and how to reach it, from config and the environment
// (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE), in the shape both the client and the worker connect with.
import { readFileSync } from 'node:fs';
import { OperatorError } from '../model/errors';
import type { SiteConfig } from './schema';

export const DEFAULT_TEMPORAL_ADDRESS = 'localhost:7233';

export interface TemporalTls {
  serverNameOverride?: string;
  serverRootCACertificate?: Buffer;
  clientCertPair?: { crt: Buffer; key: Buffer };
}

export interface TemporalSettings {
  address: string;
  namespace: string;
  taskQueue: string;
  tls?: TemporalTls | boolean;
  apiKey?: string;
}

function readPemFile(path: string, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch {
    throw new OperatorError(`temporal.tls.${field}: cannot read ${path}`);
  }
}

export function resolveTemporalSettings(site: SiteConfig, env: NodeJS.ProcessEnv): TemporalSettings {
  const { temporal } = site;
  const settings: TemporalSettings = {
    address: temporal.address ?? env.TEMPORAL_ADDRESS ?? DEFAULT_TEMPORAL_ADDRESS,
    namespace: temporal.namespace ?? env.TEMPORAL_NAMESPACE ?? 'default',
    taskQueue: temporal.taskQueue,
  };
  if (temporal.apiKeyEnv !== undefined) {
    const apiKey = env[temporal.apiKeyEnv];
    if (apiKey === undefined || apiKey === '') {
      throw new OperatorError(`the Temporal API key is not set: set ${temporal.apiKeyEnv}`);
    }
    settings.apiKey = apiKey;
    settings.tls = temporal.tls ?? true;
  }
  if (typeof temporal.tls === 'object') {
    const { serverNameOverride, serverRootCaCertPath, clientCertPath, clientKeyPath } = temporal.tls;
    if ((clientCertPath === undefined) !== (clientKeyPath === undefined)) {
      throw new OperatorError('temporal.tls: set both clientCertPath and clientKeyPath, or neither');
    }
    settings.tls = {
      ...(serverNameOverride !== undefined && { serverNameOverride }),
      ...(serverRootCaCertPath !== undefined && {
        serverRootCACertificate: readPemFile(serverRootCaCertPath, 'serverRootCaCertPath'),
      }),
      ...(clientCertPath !== undefined &&
        clientKeyPath !== undefined && {
          clientCertPair: {
            crt: readPemFile(clientCertPath, 'clientCertPath'),
            key: readPemFile(clientKeyPath, 'clientKeyPath'),
          },
        }),
    };
  } else if (temporal.tls !== undefined) {
    settings.tls = temporal.tls;
  }
  return settings;
}
