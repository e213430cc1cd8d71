/** "Share to gallery…": the publish dialog for a notebook or folder of this instance. */

import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { notifyError } from '../actions';
import { messageOf, showError } from '../dom';
import { requestAPI } from '../handler';
import {
  galleryOptions,
  galleryPath,
  IAsset,
  IGalleryOptions,
  listAssets,
  PUBLISH_TIMEOUT_MS
} from './model';

const TAG = /^[a-z0-9][a-z0-9-]{0,31}$/;

/** What the dialog sends to /workbench/gallery/publish. */
export interface IPublishBody {
  path: string;
  title?: string;
  description?: string;
  tags?: string[];
  visibility?: string;
  workspace?: string;
  asset?: number;
}

/** The tags typed as "a, b c": lower case, each checked, at most 10. */
export function parseTags(raw: string): string[] {
  const tags = raw
    .split(/[\s,]+/)
    .map(t => t.trim().toLowerCase())
    .filter(t => t);
  const bad = tags.find(t => !TAG.test(t));
  if (bad) {
    throw new Error(
      `Tag "${bad}": use lower-case letters, digits and '-', at most 32 characters.`
    );
  }
  const unique = Array.from(new Set(tags));
  if (unique.length > 10) {
    throw new Error('Give at most 10 tags.');
  }
  return unique;
}

/** The title a path suggests: its last part without .ipynb, words spaced. */
export function suggestedTitle(path: string): string {
  const name = path.replace(/\/+$/, '').split('/').pop() || '';
  return name
    .replace(/\.ipynb$/, '')
    .replace(/[-_]+/g, ' ')
    .trim();
}

/** The dialog's body: title, description, tags, visibility and workspace, new version of. */
export class PublishForm extends Widget {
  constructor(
    readonly path: string,
    options: IGalleryOptions,
    mine: IAsset[],
    previous: IPublishBody | null,
    error: string
  ) {
    super();
    this.addClass('jp-WorkbenchGallery-publish');
    this.node.innerHTML = `
      <p class="jp-WorkbenchGallery-hint"></p>
      <div class="jp-WorkbenchGallery-error" hidden></div>
      <label>New version of
        <select name="asset"><option value="">(a new asset)</option></select></label>
      <label data-for="title">Title
        <input name="title" maxlength="120" required></label>
      <label data-for="description">Description (Markdown)
        <textarea name="description" rows="6" maxlength="20000"
          placeholder="What the case shows, how to run it, what data it needs"></textarea></label>
      <label data-for="tags">Tags (comma or space separated)
        <input name="tags" placeholder="e.g. nlp, pytorch, tutorial"></label>
      <label data-for="visibility">Visible to
        <select name="visibility">
          <option value="everyone">Everyone on this platform</option>
          <option value="workspace">Members of a workspace</option>
        </select></label>
      <label data-for="workspace" hidden>Workspace
        <select name="workspace"></select></label>`;
    this._q('.jp-WorkbenchGallery-hint').textContent =
      `Publishes a snapshot of ${path}: later edits change nothing in the ` +
      'gallery until you publish a new version.';
    const asset = this._select('asset');
    for (const a of mine) {
      asset.append(new Option(`${a.title} (v${a.version})`, String(a.id)));
    }
    const workspace = this._select('workspace');
    for (const name of options.workspaces) {
      workspace.append(new Option(name, name));
    }
    const visibility = this._select('visibility');
    if (!options.workspaces.length) {
      visibility.options[1].disabled = true;
      visibility.options[1].text += ' (you are in none)';
    }
    visibility.onchange = () => this._sync();
    asset.onchange = () => this._sync();
    this._input('title').value = previous?.title ?? suggestedTitle(path);
    this._textarea().value = previous?.description ?? '';
    this._input('tags').value = (previous?.tags ?? []).join(', ');
    if (previous?.visibility) {
      visibility.value = previous.visibility;
    }
    if (previous?.workspace) {
      workspace.value = previous.workspace;
    }
    if (previous?.asset) {
      asset.value = String(previous.asset);
    }
    showError(this._q('.jp-WorkbenchGallery-error'), error);
    this._sync();
  }

  /** The fields as typed, unchecked (to show them again after a refusal). */
  draft(): IPublishBody {
    const asset = this._select('asset').value;
    return {
      path: this.path,
      asset: asset ? Number(asset) : undefined,
      title: this._input('title').value,
      description: this._textarea().value,
      tags: this._input('tags')
        .value.split(/[\s,]+/)
        .filter(t => t),
      visibility: this._select('visibility').value,
      workspace: this._select('workspace').value
    };
  }

  /** The publish request; throws a message for what is missing or wrong. */
  getValue(): IPublishBody {
    const asset = this._select('asset').value;
    if (asset) {
      return { path: this.path, asset: Number(asset) };
    }
    const title = this._input('title').value.trim();
    if (!title) {
      throw new Error('A title is required (1-120 characters).');
    }
    const body: IPublishBody = {
      path: this.path,
      title,
      description: this._textarea().value,
      tags: parseTags(this._input('tags').value),
      visibility: this._select('visibility').value
    };
    if (body.visibility === 'workspace') {
      body.workspace = this._select('workspace').value;
      if (!body.workspace) {
        throw new Error('Pick the workspace whose members may see it.');
      }
    }
    return body;
  }

  /** Fields of a new asset are hidden while a new version of an existing one is chosen. */
  private _sync(): void {
    const version = !!this._select('asset').value;
    for (const name of ['title', 'description', 'tags', 'visibility']) {
      (this._q(`label[data-for="${name}"]`) as HTMLElement).hidden = version;
    }
    (this._q('label[data-for="workspace"]') as HTMLElement).hidden =
      version || this._select('visibility').value !== 'workspace';
  }

  private _q(selector: string): HTMLElement {
    return this.node.querySelector(selector) as HTMLElement;
  }

  private _input(name: string): HTMLInputElement {
    return this.node.querySelector(`input[name="${name}"]`) as HTMLInputElement;
  }

  private _select(name: string): HTMLSelectElement {
    return this.node.querySelector(
      `select[name="${name}"]`
    ) as HTMLSelectElement;
  }

  private _textarea(): HTMLTextAreaElement {
    return this.node.querySelector('textarea') as HTMLTextAreaElement;
  }
}

/**
 * Ask how to share `path` and publish it; the dialog comes back with the refusal's reason
 * until it is published or cancelled. `open` shows the published asset in the gallery view.
 */
export async function sharePath(
  path: string,
  open: (id: number) => void
): Promise<IAsset | null> {
  if (!path) {
    Notification.warning(
      'Pick a notebook or a folder holding one (in the file browser), or open a notebook, then share it.'
    );
    return null;
  }
  let options: IGalleryOptions;
  let mine: IAsset[];
  try {
    [options, mine] = await Promise.all([
      galleryOptions(),
      listAssets({ mine: true, kind: 'notebook', limit: 100 }).then(
        list => list.assets
      )
    ]);
  } catch (error) {
    notifyError('Cannot share to the gallery', error);
    return null;
  }
  let previous: IPublishBody | null = null;
  let error = '';
  for (;;) {
    const form: PublishForm = new PublishForm(
      path,
      options,
      mine,
      previous,
      error
    );
    let result: Dialog.IResult<IPublishBody>;
    try {
      result = await showDialog<IPublishBody>({
        title: 'Share to gallery',
        body: form,
        buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Share' })]
      });
    } catch (e) {
      // a field is missing or wrong: the dialog again, with the reason
      previous = form.draft();
      error = messageOf(e);
      continue;
    }
    if (!result.button.accept || !result.value) {
      return null;
    }
    previous = form.draft();
    const pending = Notification.emit(
      `Publishing ${path} to the gallery…`,
      'in-progress',
      { autoClose: false }
    );
    try {
      const asset = await requestAPI<IAsset>(
        galleryPath('publish'),
        { method: 'POST', body: JSON.stringify(result.value) },
        PUBLISH_TIMEOUT_MS
      );
      Notification.update({
        id: pending,
        type: 'success',
        message: `Shared “${asset.title}” (version ${asset.version}) to the gallery.`,
        autoClose: 10_000,
        actions: [
          {
            label: 'Open in gallery',
            callback: () => open(asset.id)
          }
        ]
      });
      return asset;
    } catch (e) {
      Notification.dismiss(pending);
      error = messageOf(e);
    }
  }
}
