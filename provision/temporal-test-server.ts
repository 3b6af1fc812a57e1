// Finds Temporal's time-skipping test server (the Java one the TypeScript SDK runs for
// TestWorkflowEnvironment.createTimeSkipping), or installs a pinned version into .tools/ through
// Maven Central. The SDK's own download comes from a site this project cannot reach; Maven Central
// serves the same server as the artifact io.temporal:temporal-test-server. Order:
// $TEMPORAL_TEST_SERVER, a project-local install, then Maven (needs `java` and `mvn` on PATH). It
// says which route it took. The install is a tiny pom.xml resolved by `mvn dependency:build-classpath`
// (the jars stay in Maven's local repository) and a shell wrapper that execs java with that class
// path, so the SDK's teardown, which kills the process it started, stops the JVM itself.
import { execFile } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { OperatorError } from '../model/errors';
import { findOnPath, isExecutable } from './executables';
import { toolsDir } from './project-paths';

const run = promisify(execFile);

export const TEMPORAL_TEST_SERVER_VERSION = '1.31.0';
const INSTALL_DIR = `temporal-test-server-${TEMPORAL_TEST_SERVER_VERSION}`;
/** The SLF4J API the server's release depends on: its binding must match. */
const SLF4J_VERSION = '1.7.36';
const MAIN_CLASS = 'io.temporal.testserver.TestServer';

export type TemporalTestServerRoute = 'TEMPORAL_TEST_SERVER' | 'project-local' | 'Maven Central';

export interface TemporalTestServer {
  /** An executable that takes the port as its first argument, as the SDK runs it. */
  path: string;
  route: TemporalTestServerRoute;
}

export interface FindTemporalTestServerOptions {
  env?: NodeJS.ProcessEnv;
  toolsDir?: string;
  log?: (message: string) => void;
}

/** The wrapper a project-local install leaves, and the class path it reads. */
export function projectLocalWrapper(tools: string): { wrapper: string; classpath: string } {
  const dir = path.join(tools, INSTALL_DIR);
  return {
    wrapper: path.join(dir, 'bin', 'temporal-test-server'),
    classpath: path.join(dir, 'classpath.txt'),
  };
}

/** The jars may live in a Maven repository that was cleaned since: then the install is stale. */
function installIsWhole(tools: string): boolean {
  const { wrapper, classpath } = projectLocalWrapper(tools);
  if (!isExecutable(wrapper) || !existsSync(classpath)) return false;
  const jars = readFileSync(classpath, 'utf8').trim().split(path.delimiter);
  return jars.length > 0 && jars.every((jar) => jar !== '' && existsSync(jar));
}

function pom(): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by provision/temporal-test-server.ts: resolves the test server's class path, nothing else. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.pg-live-migrate</groupId>
  <artifactId>temporal-test-server-classpath</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>io.temporal</groupId>
      <artifactId>temporal-test-server</artifactId>
      <version>${TEMPORAL_TEST_SERVER_VERSION}</version>
    </dependency>
    <!-- The server logs through SLF4J ${SLF4J_VERSION}; without a binding it warns on every start. -->
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-nop</artifactId>
      <version>${SLF4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
`;
}

/** `exec`, so the process the SDK starts and later kills is the JVM, not a shell left waiting. */
function wrapper(): string {
  return `#!/bin/sh
# Written by provision/temporal-test-server.ts: Temporal's time-skipping test server ${TEMPORAL_TEST_SERVER_VERSION}.
dir=$(cd "$(dirname "$0")/.." && pwd)
exec java -cp "$(cat "$dir/classpath.txt")" ${MAIN_CLASS} "$@"
`;
}

/** Maven's own words for a failure (its [ERROR] line), rather than the command line it ran. */
function mavenFailure(err: unknown): Error {
  const output = `${(err as { stdout?: string }).stdout ?? ''}\n${(err as { stderr?: string }).stderr ?? ''}`;
  const line = output.split('\n').find((text) => text.startsWith('[ERROR]'));
  return new Error(line !== undefined ? `mvn: ${line.replace(/^\[ERROR\]\s*/, '')}` : (err as Error).message);
}

async function installFromMaven(tools: string, env: NodeJS.ProcessEnv): Promise<string> {
  const java = findOnPath(env, 'java');
  const mvn = findOnPath(env, 'mvn');
  const missing = [java === undefined && 'java', mvn === undefined && 'mvn'].filter(Boolean);
  if (java === undefined || mvn === undefined) throw new Error(`no ${missing.join(' and no ')} on PATH`);
  mkdirSync(tools, { recursive: true });
  const target = path.join(tools, INSTALL_DIR);
  // Built in a fresh folder and renamed into place, so a failed install leaves nothing.
  const tmp = mkdtempSync(path.join(tools, `.${INSTALL_DIR}-`));
  try {
    writeFileSync(path.join(tmp, 'pom.xml'), pom());
    await run(
      mvn,
      [
        '-q',
        '-B',
        '-f',
        path.join(tmp, 'pom.xml'),
        'dependency:build-classpath',
        `-Dmdep.outputFile=${path.join(tmp, 'classpath.txt')}`,
      ],
      { env, timeout: 900_000, maxBuffer: 16 * 1024 * 1024 },
    ).catch((err: unknown) => {
      throw mavenFailure(err);
    });
    mkdirSync(path.join(tmp, 'bin'));
    const script = path.join(tmp, 'bin', 'temporal-test-server');
    writeFileSync(script, wrapper());
    chmodSync(script, 0o755);
    rmSync(target, { recursive: true, force: true });
    try {
      renameSync(tmp, target);
    } catch (err) {
      // Another process finished the same install first: use theirs.
      if (!installIsWhole(tools)) throw err;
    }
    return projectLocalWrapper(tools).wrapper;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

export async function findOrInstallTemporalTestServer(
  options: FindTemporalTestServerOptions = {},
): Promise<TemporalTestServer> {
  const env = options.env ?? process.env;
  const tools = options.toolsDir ?? toolsDir;
  const log = options.log ?? (() => undefined);
  const found = (file: string, route: TemporalTestServerRoute): TemporalTestServer => {
    log(`temporal test server: ${file}, found through ${route}`);
    return { path: file, route };
  };

  const fromEnv = env.TEMPORAL_TEST_SERVER;
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!isExecutable(fromEnv)) {
      throw new OperatorError(`TEMPORAL_TEST_SERVER is set to ${fromEnv}, which is not an executable file`);
    }
    return found(fromEnv, 'TEMPORAL_TEST_SERVER');
  }
  if (installIsWhole(tools)) {
    if (findOnPath(env, 'java') === undefined) {
      throw new OperatorError(
        'the temporal test server needs java on PATH (Java 11 or later); install a JDK or JRE',
      );
    }
    return found(projectLocalWrapper(tools).wrapper, 'project-local');
  }
  log(
    `temporal test server: not found; installing io.temporal:temporal-test-server:${TEMPORAL_TEST_SERVER_VERSION} from Maven Central into ${tools}`,
  );
  try {
    return found(await installFromMaven(tools, env), 'Maven Central');
  } catch (err) {
    const reason = (err as Error).message.split('\n')[0] ?? 'failed';
    throw new OperatorError(
      `cannot install the temporal test server from Maven Central (${reason}); install java and mvn, or set TEMPORAL_TEST_SERVER to an executable that runs ${MAIN_CLASS} with the port as its argument`,
    );
  }
}
