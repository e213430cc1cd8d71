/** "Label as dataset…": a folder of the instance made into a dataset (name, type, labels asked). */

import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { el, messageOf } from '../dom';
import { requestAPI } from '../handler';
import { DATASET_TYPES, DatasetType, IDataset } from './model';

/** What the dialog asks. */
export interface INewDataset {
  name: string;
  type: DatasetType;
  labels: string[];
}

/** POST workbench/datasets-from-folder. */
export interface IFromFolder {
  dataset: IDataset;
  upload: { added?: number; unchanged?: number };
  files: number;
  skipped: number;
}

/** A dataset name from a folder's: lower-case letters, digits and '-'. */
export function defaultDatasetName(path: string): string {
  const base = path.replace(/\/+$/, '').split('/').pop() || 'dataset';
  const name = base
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return name.slice(0, 64).replace(/-+$/, '') || 'dataset';
}

/** Label names from "cat, dog" (or one a line). */
export function parseLabels(text: string): string[] {
  const names = text
    .split(/[,\n]/)
    .map(s => s.trim())
    .filter(Boolean);
  return [...new Set(names)];
}

class NewDatasetForm extends Widget {
  constructor(path: string) {
    super();
    this.addClass('jp-WorkbenchLabel-create');
    this._name.name = 'name';
    this._name.value = defaultDatasetName(path);
    this._type.name = 'type';
    for (const { type, label } of DATASET_TYPES) {
      this._type.append(new Option(label, type));
    }
    this._labels.name = 'labels';
    this._labels.placeholder = 'cat, dog';
    const row = (text: string, input: HTMLElement) => {
      const label = el('label', '', text);
      label.append(input);
      return label;
    };
    this.node.append(
      el(
        'p',
        '',
        `The files of ${path || 'this folder'} become the dataset's samples ` +
          '(images, or .txt files for text types).'
      ),
      row('Name', this._name),
      row('Type', this._type),
      row('Labels (comma separated; more can be added later)', this._labels)
    );
  }

  getValue(): INewDataset {
    return {
      name: this._name.value.trim(),
      type: this._type.value as DatasetType,
      labels: parseLabels(this._labels.value)
    };
  }

  private _name = el('input');
  private _type = el('select');
  private _labels = el('input');
}

/** Ask for the dataset's name, type and labels, and make it of the folder; null if cancelled. */
export async function createFromFolder(
  path: string
): Promise<IFromFolder | null> {
  const result = await showDialog({
    title: 'Label as dataset',
    body: new NewDatasetForm(path),
    buttons: [
      Dialog.cancelButton(),
      Dialog.okButton({ label: 'Create and label' })
    ]
  });
  if (!result.button.accept || !result.value) {
    return null;
  }
  const spec = result.value;
  const id = Notification.emit(
    `Uploading ${path} as dataset ${spec.name}…`,
    'in-progress',
    { autoClose: false }
  );
  try {
    const made = await requestAPI<IFromFolder>(
      'datasets-from-folder',
      {
        method: 'POST',
        body: JSON.stringify({
          path,
          name: spec.name,
          type: spec.type,
          labels: spec.labels.map(name => ({ name }))
        })
      },
      // the folder's files are packed and uploaded first
      600_000
    );
    Notification.update({
      id,
      message:
        `Dataset ${made.dataset.name}: ${made.files} samples` +
        (made.skipped
          ? ` (${made.skipped} other ${made.skipped === 1 ? 'file' : 'files'} left out)`
          : ''),
      type: 'success',
      autoClose: 5000
    });
    return made;
  } catch (error) {
    Notification.update({
      id,
      message: `Dataset ${spec.name} not created: ${messageOf(error)}`,
      type: 'error',
      autoClose: false
    });
    return null;
  }
}
