import { ISignal, Signal } from '@lumino/signaling';

import { requestAPI } from './handler';
import { IUsage } from './models';

/** How often the panel and the status bar refresh CPU and memory use. */
export const USAGE_INTERVAL_MS = 3000;

/**
 * Polls workbench/usage while someone listens and the page is visible; the panel and the
 * status bar share its readings.
 */
export class UsagePoller {
  get changed(): ISignal<this, IUsage | null> {
    return this._changed;
  }

  get latest(): IUsage | null {
    return this._latest;
  }

  /** Start polling (again): the first reading comes at once. */
  start(): void {
    if (this._timer !== null) {
      return;
    }
    void this._tick();
    this._timer = window.setInterval(
      () => void this._tick(),
      USAGE_INTERVAL_MS
    );
  }

  /** Stop polling, e.g. while the instance restarts. */
  stop(): void {
    if (this._timer !== null) {
      window.clearInterval(this._timer);
      this._timer = null;
    }
  }

  private async _tick(): Promise<void> {
    if (this._busy || document.visibilityState === 'hidden') {
      return;
    }
    this._busy = true;
    try {
      this._latest = await requestAPI<IUsage>('usage', {}, 10_000);
    } catch {
      this._latest = null; // shown as "unknown"; the panel reports the cause of errors
    } finally {
      this._busy = false;
    }
    this._changed.emit(this._latest);
  }

  private _busy = false;
  private _latest: IUsage | null = null;
  private _timer: number | null = null;
  private _changed = new Signal<this, IUsage | null>(this);
}

/** "42%" or "?" */
export function percent(value: number | null | undefined): string {
  return value === null || value === undefined ? '?' : `${Math.round(value)}%`;
}
