/** Samples in keyset pages, and their contents fetched ahead so the next one shows at once. */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { requestAPI } from '../handler';
import { contentUrl, ISample, ISamplePage } from './model';

/** Samples a page holds (the API's keyset paging by id). */
export const PAGE_SIZE = 200;
/** The next page is asked for when this few loaded samples are left ahead. */
const LOAD_AHEAD = 60;
/** Contents fetched ahead of the shown sample, and behind it. */
const PREFETCH_AHEAD = 6;
const PREFETCH_BEHIND = 2;
/** Contents kept in memory (decoded images, texts). */
const CACHE_SIZE = 64;

/** The samples of a dataset that match a filter, loaded page by page as the view goes on. */
export class SampleLoader {
  constructor(
    private _path: string,
    private _query: Record<string, string>
  ) {}

  readonly samples: ISample[] = [];
  /** All samples that match (from the first page), null until known. */
  total: number | null = null;

  /** Whether every page has been loaded. */
  get done(): boolean {
    return this._done;
  }

  /** Load pages until `index` is loaded or none are left; whether it is. */
  async ensure(index: number): Promise<boolean> {
    while (index >= this.samples.length && !this._done) {
      await this.loadPage();
    }
    return index < this.samples.length;
  }

  /** Load the next page in the background when `index` nears the end of what is loaded. */
  ahead(index: number): void {
    if (!this._done && index + LOAD_AHEAD >= this.samples.length) {
      this.loadPage().catch(() => {
        // tried again on the next move
      });
    }
  }

  /** The index of a loaded sample, -1 if not loaded. */
  indexOf(id: number): number {
    return this.samples.findIndex(s => s.id === id);
  }

  /** The next page (one at a time: a second call gets the same page). */
  loadPage(): Promise<void> {
    if (!this._loading) {
      this._loading = this._fetch().finally(() => {
        this._loading = null;
      });
    }
    return this._loading;
  }

  private async _fetch(): Promise<void> {
    const query: Record<string, string> = {
      ...this._query,
      limit: String(PAGE_SIZE)
    };
    if (this._after !== null) {
      query.after = String(this._after);
    } else {
      query.with_total = '1';
    }
    const page = await requestAPI<ISamplePage>(
      `${this._path}/samples${URLExt.objectToQueryString(query)}`
    );
    if (typeof page.total === 'number') {
      this.total = page.total;
    }
    this.samples.push(...page.samples);
    // `after` is exclusive: the next page starts after this page's last sample ("next" only
    // tells whether there is one)
    const last = page.samples[page.samples.length - 1];
    if (last) {
      this._after = last.id;
    }
    if (page.next === null || page.next === undefined || !last) {
      this._done = true;
      if (this.total === null) {
        this.total = this.samples.length;
      }
    }
  }

  private _after: number | null = null;
  private _done = false;
  private _loading: Promise<void> | null = null;
}

/**
 * The contents of samples (decoded images, texts), fetched ahead of the shown one; the
 * browser keeps the image files themselves (their ETag and Cache-Control).
 */
export class ContentCache {
  constructor(
    private _owner: string,
    private _name: string,
    private _images: boolean
  ) {}

  /** A sample's content, once loaded: an image, decoded; a text. */
  get(sample: ISample): Promise<HTMLImageElement | string> {
    let entry = this._entries.get(sample.id);
    if (entry) {
      // most recently used last
      this._entries.delete(sample.id);
    } else {
      entry = this._load(sample);
      entry.catch(() => this._entries.delete(sample.id));
    }
    this._entries.set(sample.id, entry);
    while (this._entries.size > CACHE_SIZE) {
      const oldest = this._entries.keys().next().value as number;
      this._entries.delete(oldest);
      this._ready.delete(oldest);
    }
    return entry;
  }

  /** Whether a sample's content is loaded already. */
  ready(sample: ISample): boolean {
    return this._ready.has(sample.id);
  }

  /** Fetch the contents around `index` ahead of time. */
  prefetch(samples: ISample[], index: number): void {
    const from = Math.max(0, index - PREFETCH_BEHIND);
    const to = Math.min(samples.length, index + PREFETCH_AHEAD + 1);
    for (let i = index + 1; i < to; i++) {
      this.get(samples[i]).catch(() => undefined);
    }
    for (let i = from; i < index; i++) {
      this.get(samples[i]).catch(() => undefined);
    }
  }

  private async _load(sample: ISample): Promise<HTMLImageElement | string> {
    let content: HTMLImageElement | string;
    if (this._images) {
      const image = new Image();
      image.decoding = 'async';
      image.src = contentUrl(this._owner, this._name, sample.id);
      await image.decode();
      content = image;
    } else if (typeof sample.text === 'string') {
      content = sample.text;
    } else {
      content = await this._text(sample);
    }
    this._ready.add(sample.id);
    return content;
  }

  /** A text sample's file (its JSON carries the text only up to a size). */
  private async _text(sample: ISample): Promise<string> {
    const settings = ServerConnection.makeSettings();
    const url = contentUrl(this._owner, this._name, sample.id);
    const response = await ServerConnection.makeRequest(url, {}, settings);
    if (!response.ok) {
      throw new Error(
        `Cannot load ${sample.key}: HTTP ${response.status}. Reload the view.`
      );
    }
    return response.text();
  }

  private _entries = new Map<number, Promise<HTMLImageElement | string>>();
  private _ready = new Set<number>();
}
