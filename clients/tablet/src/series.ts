// Columnar trend data of one case: per channel, parallel arrays of bucket
// start, count, min, max and mean, kept in time order. WatchCase delivers a
// bucket that spans two messages in two parts; parts with the same start
// merge as charting.proto says (counts add, min of minimums, max of
// maximums, count-weighted mean). No per-point objects: uPlot draws
// straight from these arrays.

/** One bucket part as WatchCase or QuerySamples delivers it. */
export interface BucketPart {
  start: number; // ms since the epoch
  count: number; // usable samples
  min: number;
  max: number;
  mean: number;
}

export class ChannelSeries {
  readonly t: number[] = [];
  readonly count: number[] = [];
  readonly min: number[] = [];
  readonly max: number[] = [];
  readonly mean: number[] = [];

  get length(): number {
    return this.t.length;
  }

  /** The newest bucket start, or -Infinity. */
  get lastTime(): number {
    return this.t.length ? this.t[this.t.length - 1] : -Infinity;
  }

  /** Merges one bucket part in; nearly always at the end, so it searches from there. */
  merge(b: BucketPart): void {
    let i = this.t.length - 1;
    while (i >= 0 && this.t[i] > b.start) i--;
    if (i >= 0 && this.t[i] === b.start) {
      const c = this.count[i] + b.count;
      if (b.count > 0) {
        this.mean[i] = c > 0 ? (this.mean[i] * this.count[i] + b.mean * b.count) / c : b.mean;
        this.min[i] = this.count[i] > 0 ? Math.min(this.min[i], b.min) : b.min;
        this.max[i] = this.count[i] > 0 ? Math.max(this.max[i], b.max) : b.max;
      }
      this.count[i] = c;
      return;
    }
    const at = i + 1;
    if (at === this.t.length) {
      this.t.push(b.start);
      this.count.push(b.count);
      this.min.push(b.min);
      this.max.push(b.max);
      this.mean.push(b.mean);
    } else {
      this.t.splice(at, 0, b.start);
      this.count.splice(at, 0, b.count);
      this.min.splice(at, 0, b.min);
      this.max.splice(at, 0, b.max);
      this.mean.splice(at, 0, b.mean);
    }
  }

  /** Value of bucket i for drawing: its mean, or null (a gap) when it had no usable sample. */
  y(i: number): number | null {
    return this.count[i] > 0 ? this.mean[i] : null;
  }

  /** Index of the first bucket at or after t. */
  lowerBound(t: number): number {
    let lo = 0;
    let hi = this.t.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.t[mid] < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The newest usable value and its time. */
  latest(): { t: number; v: number } | null {
    for (let i = this.t.length - 1; i >= 0; i--) {
      if (this.count[i] > 0) return { t: this.t[i], v: this.mean[i] };
    }
    return null;
  }
}

/** The channels of one case. */
export class SeriesStore {
  readonly channels = new Map<string, ChannelSeries>();
  /** Bumped on every change, so views know to redraw. */
  version = 0;

  get(key: string): ChannelSeries | undefined {
    return this.channels.get(key);
  }

  /** Merges the parts of one channel. */
  add(channel: string, parts: Iterable<BucketPart>): void {
    let s = this.channels.get(channel);
    if (!s) {
      s = new ChannelSeries();
      this.channels.set(channel, s);
    }
    for (const p of parts) s.merge(p);
    this.version++;
  }

  /** First and last bucket start over every channel; null when empty. */
  extent(): [number, number] | null {
    let lo = Infinity;
    let hi = -Infinity;
    for (const s of this.channels.values()) {
      if (s.length) {
        lo = Math.min(lo, s.t[0]);
        hi = Math.max(hi, s.lastTime);
      }
    }
    return lo <= hi ? [lo, hi] : null;
  }
}
