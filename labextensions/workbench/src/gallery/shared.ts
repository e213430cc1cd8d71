/** The panel's "Shared by me" section: the user's gallery assets, each to open or unpublish. */

import { button, el, field, messageOf, showError } from '../dom';
import { WorkbenchError } from '../handler';
import { IAsset, listAssets, unpublish, uses } from './model';
import { confirmUnpublish } from './view';

export class SharedSection {
  constructor(
    private _open: (id: number | null) => void,
    private _changed: () => void = () => undefined
  ) {
    this.node.dataset.section = 'gallery';
    const header = el('div', 'jp-WorkbenchDatasets-header');
    const gallery = button('Gallery', 'open-gallery', 'reject');
    gallery.title = 'Browse what others shared';
    gallery.onclick = () => this._open(null);
    const refresh = button('Refresh', 'refresh-shared', 'reject');
    refresh.onclick = () => void this.refresh();
    const buttons = el('span', 'jp-WorkbenchGallery-sectionButtons');
    buttons.append(gallery, refresh);
    header.append(el('h3', '', 'Shared by me'), buttons);
    this._error.hidden = true;
    this._empty.hidden = true;
    this.node.append(header, this._error, this._list, this._empty);
  }

  readonly node = el('section', 'jp-WorkbenchGallery-shared');

  async refresh(): Promise<void> {
    let assets: IAsset[];
    try {
      assets = (await listAssets({ mine: true, limit: 100 })).assets;
    } catch (error) {
      // a platform without the gallery: no section
      this.node.hidden =
        error instanceof WorkbenchError && error.status === 501;
      showError(this._error, messageOf(error));
      return;
    }
    this.node.hidden = false;
    showError(this._error, '');
    this._list.replaceChildren(...assets.map(a => this._item(a)));
    this._empty.hidden = assets.length > 0;
  }

  private _item(asset: IAsset): HTMLElement {
    const item = el('li', 'jp-WorkbenchGallery-sharedItem');
    item.dataset.asset = String(asset.id);
    const title = field(
      'div',
      'jp-WorkbenchGallery-sharedTitle',
      'title',
      asset.title
    );
    title.title = 'Open in the gallery';
    title.onclick = () => this._open(asset.id);
    const remove = button('Unpublish', 'unpublish', 'warn');
    remove.title = 'Remove it and all its versions from the gallery';
    remove.onclick = async () => {
      if (!(await confirmUnpublish(asset))) {
        return;
      }
      remove.disabled = true;
      try {
        await unpublish(asset.id);
      } catch (error) {
        remove.disabled = false;
        showError(this._error, messageOf(error));
        return;
      }
      item.remove();
      this._empty.hidden = this._list.children.length > 0;
      this._changed();
    };
    item.append(
      title,
      field(
        'div',
        'jp-WorkbenchGallery-sharedStats',
        'stats',
        `${asset.kind} · v${asset.version} · ${uses(asset.uses)} · ★ ${asset.stars}`
      ),
      remove
    );
    return item;
  }

  private _error = el('div', 'jp-WorkbenchDatasets-error');
  private _list = el('ul', 'jp-WorkbenchGallery-sharedList');
  private _empty = el(
    'div',
    'jp-WorkbenchDatasets-empty',
    'Nothing shared yet. Right-click a notebook or folder in the file browser: ' +
      '“Share to gallery…”.'
  );
}
