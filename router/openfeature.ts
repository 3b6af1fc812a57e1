// The OpenFeature entry point (`pg-live-migrate/openfeature`): the stage store as an OpenFeature
// provider. Apart from the router's entry point so that an application that does not use OpenFeature
// neither loads nor installs its SDK (@openfeature/server-sdk is an optional peer: the provider has
// to be built on the application's own copy of the SDK).
export { StageFlagProvider, STAGE_FLAG, READ_PERCENT_FLAG, STATE_FLAG } from './openfeature-provider';
export type { Stage, StageState } from '../model/stages';
