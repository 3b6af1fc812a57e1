// The stage store as an OpenFeature provider, so a team can read (and watch) the migration's flags
// through the OpenFeature API it already uses, or put its own flag service in front of them:
//   migration.stage        string  off | dual_write | shadow | live | switched | complete
//   migration.readPercent  number  percentage of reads served by new in `live`
//   migration.state        object  { stage, readPercent, version, fenced }
// A stage change is announced as a ConfigurationChanged event.
import {
  FlagNotFoundError,
  OpenFeatureEventEmitter,
  ProviderEvents,
  StandardResolutionReasons,
  TypeMismatchError,
  type JsonValue,
  type Provider,
  type ResolutionDetails,
} from '@openfeature/server-sdk';
import type { StageWatcher } from '../db/stage-store';

export const STAGE_FLAG = 'migration.stage';
export const READ_PERCENT_FLAG = 'migration.readPercent';
export const STATE_FLAG = 'migration.state';
const FLAGS = [STAGE_FLAG, READ_PERCENT_FLAG, STATE_FLAG];

export class StageFlagProvider implements Provider {
  readonly metadata = { name: 'pg-live-migrate stage store' };
  readonly runsOn = 'server';
  readonly events = new OpenFeatureEventEmitter();

  constructor(private readonly watcher: StageWatcher) {
    watcher.on('change', () =>
      this.events.emit(ProviderEvents.ConfigurationChanged, { flagsChanged: FLAGS }),
    );
  }

  private resolve<T>(flagKey: string, wanted: string, value: () => T): Promise<ResolutionDetails<T>> {
    const type = Object.entries({
      [STAGE_FLAG]: 'string',
      [READ_PERCENT_FLAG]: 'number',
      [STATE_FLAG]: 'object',
    }).find(([key]) => key === flagKey)?.[1];
    if (type === undefined) {
      return Promise.reject(
        new FlagNotFoundError(`no flag ${flagKey}; the stage store has ${FLAGS.join(', ')}`),
      );
    }
    if (type !== wanted)
      return Promise.reject(new TypeMismatchError(`${flagKey} is a ${type}, not a ${wanted}`));
    return Promise.resolve({
      value: value(),
      variant: this.watcher.current.stage,
      reason: StandardResolutionReasons.CACHED,
      flagMetadata: { version: this.watcher.current.version },
    });
  }

  resolveBooleanEvaluation(flagKey: string): Promise<ResolutionDetails<boolean>> {
    return this.resolve(flagKey, 'boolean', () => false);
  }

  resolveStringEvaluation(flagKey: string): Promise<ResolutionDetails<string>> {
    return this.resolve(flagKey, 'string', () => this.watcher.current.stage);
  }

  resolveNumberEvaluation(flagKey: string): Promise<ResolutionDetails<number>> {
    return this.resolve(flagKey, 'number', () => this.watcher.current.readPercent);
  }

  resolveObjectEvaluation<T extends JsonValue>(flagKey: string): Promise<ResolutionDetails<T>> {
    return this.resolve(flagKey, 'object', () => ({ ...this.watcher.current }) as unknown as T);
  }
}
