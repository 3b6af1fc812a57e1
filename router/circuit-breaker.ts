// A circuit breaker for the side that is not authoritative: after `failureThreshold` failures in a
// row it opens, and calls to that side are skipped (the caller falls back or queues a discrepancy)
// until `cooldownMs` has passed; then one trial call goes through, and its outcome closes or reopens it.

export type CircuitState = 'closed' | 'open' | 'half-open';

export interface CircuitBreakerOptions {
  /** Failures in a row that open the circuit (default 5). */
  failureThreshold?: number;
  /** How long the circuit stays open before a trial call, in ms (default 5000). */
  cooldownMs?: number;
}

export class CircuitBreaker {
  private failures = 0;
  private openedAt = 0;
  private trialInFlight = false;
  private current: CircuitState = 'closed';
  private readonly failureThreshold: number;
  private readonly cooldownMs: number;

  constructor(
    options: CircuitBreakerOptions = {},
    private readonly onChange: (state: CircuitState) => void = () => undefined,
    private readonly now: () => number = Date.now,
  ) {
    this.failureThreshold = options.failureThreshold ?? 5;
    this.cooldownMs = options.cooldownMs ?? 5000;
  }

  get state(): CircuitState {
    return this.current;
  }

  /**
   * Whether a call may go to the side now. In half-open state only one trial call at a time may;
   * `claimTrial: false` asks without taking that one trial (the caller will ask again before calling).
   */
  allow(claimTrial = true): boolean {
    if (this.current === 'open' && this.now() - this.openedAt >= this.cooldownMs) {
      this.move('half-open');
    }
    if (this.current === 'closed') return true;
    if (this.current === 'half-open' && !this.trialInFlight) {
      if (claimTrial) this.trialInFlight = true;
      return true;
    }
    return false;
  }

  success(): void {
    this.failures = 0;
    this.trialInFlight = false;
    if (this.current !== 'closed') this.move('closed');
  }

  failure(): void {
    this.failures++;
    this.trialInFlight = false;
    if (
      this.current === 'half-open' ||
      (this.current === 'closed' && this.failures >= this.failureThreshold)
    ) {
      this.openedAt = this.now();
      this.move('open');
    }
  }

  private move(state: CircuitState): void {
    this.current = state;
    this.onChange(state);
  }
}
