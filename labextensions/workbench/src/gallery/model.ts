/** The gallery's shapes as the server extension relays them, and their calls. */

import { requestAPI } from '../handler';

export type AssetKind = 'notebook' | 'image' | 'model' | 'dataset';

export const KINDS: AssetKind[] = ['notebook', 'image', 'model', 'dataset'];

export const SORTS: [string, string][] = [
  ['newest', 'Newest'],
  ['most_used', 'Most used'],
  ['stars', 'Most starred']
];

/** One file of a version: its path in the asset, bytes and SHA-256. */
export interface IAssetFile {
  path: string;
  size: number;
  sha256: string;
}

export interface IAssetVersion {
  version: number;
  created: string;
  size: number;
  files: number;
  meta: Record<string, any>;
  source?: Record<string, any>;
}

export interface IAsset {
  id: number;
  kind: AssetKind;
  title: string;
  description: string;
  tags: string[];
  visibility: 'workspace' | 'everyone';
  workspace: string;
  owner: string;
  created: string;
  updated: string;
  version: number;
  size: number;
  uses: number;
  stars: number;
  starred: boolean;
  meta: Record<string, any>;
  versions?: IAssetVersion[];
}

export interface IAssetList {
  assets: IAsset[];
  total: number;
  tags: Record<string, number>;
}

/** What the publish dialog starts from. */
export interface IGalleryOptions {
  instance: string;
  owner: string;
  workspaces: string[];
}

/** A notebook case taken into this instance. */
export interface ITaken {
  folder: string;
  notebook: string | null;
  files: IAssetFile[];
  asset: number;
  version: number;
}

export interface IQuery {
  q?: string;
  tag?: string[];
  kind?: string;
  sort?: string;
  mine?: boolean;
  limit?: number;
}

/** Publishing copies, parses and renders: it may take minutes on large cases. */
export const PUBLISH_TIMEOUT_MS = 310_000;
export const TAKE_TIMEOUT_MS = 600_000;
export const USE_TIMEOUT_MS = 310_000;

export function galleryPath(...rest: (string | number)[]): string {
  return ['gallery', ...rest.map(String)].join('/');
}

export function listAssets(query: IQuery): Promise<IAssetList> {
  const params = new URLSearchParams();
  if (query.q) {
    params.set('q', query.q);
  }
  for (const tag of query.tag ?? []) {
    params.append('tag', tag);
  }
  if (query.kind) {
    params.set('kind', query.kind);
  }
  if (query.sort) {
    params.set('sort', query.sort);
  }
  if (query.mine) {
    params.set('mine', '1');
  }
  if (query.limit) {
    params.set('limit', String(query.limit));
  }
  const text = params.toString();
  return requestAPI<IAssetList>(
    galleryPath('assets') + (text ? `?${text}` : '')
  );
}

export function getAsset(id: number): Promise<IAsset> {
  return requestAPI<IAsset>(galleryPath('assets', id));
}

export function setStar(id: number, starred: boolean): Promise<IAsset> {
  return requestAPI<IAsset>(galleryPath('assets', id, 'star'), {
    method: starred ? 'PUT' : 'DELETE'
  });
}

export async function unpublish(id: number): Promise<void> {
  await requestAPI<void>(galleryPath('assets', id), { method: 'DELETE' });
}

export function takeAsset(id: number, version?: number): Promise<ITaken> {
  return requestAPI<ITaken>(
    galleryPath('take'),
    { method: 'POST', body: JSON.stringify({ asset: id, version }) },
    TAKE_TIMEOUT_MS
  );
}

export function useAsset(
  id: number,
  body: Record<string, unknown>
): Promise<Record<string, any>> {
  return requestAPI<Record<string, any>>(
    galleryPath('assets', id, 'use'),
    { method: 'POST', body: JSON.stringify(body) },
    USE_TIMEOUT_MS
  );
}

let options: Promise<IGalleryOptions> | null = null;

/** This instance, its owner and their workspaces (asked once, again after a failure). */
export function galleryOptions(): Promise<IGalleryOptions> {
  if (!options) {
    options = requestAPI<IGalleryOptions>(galleryPath('options'));
    options.catch(() => {
      options = null;
    });
  }
  return options;
}

/** "1.2 MiB", "340 KiB", "12 B". */
export function formatSize(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) {
    return '?';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0
    ? `${value} ${units[unit]}`
    : `${value.toFixed(value >= 10 ? 0 : 1)} ${units[unit]}`;
}

/** The SDK line that uses an asset from a kernel of any instance. */
export function sdkLine(asset: IAsset): string {
  const name =
    asset.kind === 'model' || asset.kind === 'dataset'
      ? `, name=${JSON.stringify(defaultName(asset))}`
      : '';
  return `import workbench; workbench.gallery.use(${asset.id}${name})`;
}

/** The name a taken model or dataset gets unless another is given. */
export function defaultName(asset: IAsset): string {
  const source = String(asset.meta?.model || asset.meta?.dataset || '');
  const name = source.split('/').pop();
  return name || `asset-${asset.id}`;
}

const listeners = new Set<() => void>();

/** Call `listener` whenever the user's own assets change (published, unpublished). */
export function onGalleryChanged(listener: () => void): void {
  listeners.add(listener);
}

export function galleryChanged(): void {
  for (const listener of listeners) {
    listener();
  }
}

/** "1 use", "3 uses". */
export function uses(n: number): string {
  return n === 1 ? '1 use' : `${n} uses`;
}
