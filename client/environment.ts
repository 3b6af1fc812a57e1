// The environment a CLI command resolves connections from: the process environment, filled in by
// the dev stack running from this checkout when the operator has not set those variables.
import { readRunningStack } from '../provision/running-stack';

export interface CommandEnvironment {
  env: NodeJS.ProcessEnv;
  /** Said once to the operator when the dev stack's settings were used. */
  note?: string;
}

export function commandEnvironment(processEnv: NodeJS.ProcessEnv = process.env): CommandEnvironment {
  if (processEnv.MIGRATE_IGNORE_DEV_STACK === '1') return { env: processEnv };
  const running = readRunningStack();
  if (running === undefined) return { env: processEnv };
  const filled = Object.keys(running.env).filter((key) => processEnv[key] === undefined);
  if (filled.length === 0) return { env: processEnv };
  return {
    env: { ...running.env, ...processEnv },
    note: `using the dev stack running from this checkout (pid ${running.pid}) for ${filled.join(', ')}`,
  };
}
