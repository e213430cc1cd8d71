/** What a dataset type's editor and the labelling view offer each other. */

import { el } from '../dom';
import { byModel, confidenceText, IAnnotation, ILabel, ISample } from './model';

/** The view, as an editor sees it. */
export interface IEditorHost {
  readonly labels: ILabel[];
  readonly multiLabel: boolean;
  /** the label of new boxes and spans: the last label chosen, else the first */
  readonly activeLabel: ILabel | null;
  /**
   * The shown sample's annotations changed: undo keeps the old ones, the new ones are saved
   * and shown. `advance` goes on to the next sample; changes with the same `merge` made in a
   * row (a box moved step by step) are undone as one.
   */
  change(
    annotations: IAnnotation[],
    options?: { advance?: boolean; merge?: string }
  ): void;
  /** The colour of a label ("#888888" for one not in the set). */
  color(label: string): string;
}

/** A sample's content, ready to show: a decoded image, or a text. */
export type Content = HTMLImageElement | string;

/** One dataset type's editor, inside the view's stage. */
export interface IEditor {
  readonly node: HTMLElement;
  /** Show a sample with its content. */
  show(sample: ISample, content: Content): void;
  /** Draw the shown sample's annotations again (after a change or an undo). */
  render(): void;
  /** A key (keys.keyName): true when the editor used it. */
  key(key: string): boolean;
  /** A label chosen with its key or a click. */
  label(label: ILabel): void;
  /** The view's size changed. */
  layout(): void;
  /** The editor's own keys, for the help. */
  readonly help: [string, string][];
}

/** The labels of a classification as badges: a model's dashed, with their confidence. */
export function labelBadges(
  annotations: IAnnotation[],
  color: (label: string) => string
): HTMLElement {
  const box = el('div', 'jp-WorkbenchLabel-badges');
  box.dataset.field = 'annotations';
  if (!annotations.length) {
    box.append(el('span', 'jp-WorkbenchLabel-none', 'no label'));
  }
  for (const a of annotations) {
    const badge = el('span', 'jp-WorkbenchLabel-badge', a.label);
    badge.dataset.label = a.label;
    badge.style.setProperty('--jp-label-color', color(a.label));
    if (byModel(a)) {
      badge.dataset.prelabel = '1';
      badge.title = `pre-label by ${a.annotated_by}`;
      const confidence = confidenceText(a.confidence);
      if (confidence) {
        badge.dataset.confidence = String(a.confidence);
        badge.append(el('span', 'jp-WorkbenchLabel-confidence', confidence));
      }
    }
    box.append(badge);
  }
  return box;
}

/**
 * A classification's labels after choosing `label`: the label alone (single-label), or
 * added or taken away (multi-label). A model's labels become the person's.
 */
export function classify(
  annotations: IAnnotation[],
  label: ILabel,
  multiLabel: boolean
): IAnnotation[] {
  if (!multiLabel) {
    return [{ label: label.name }];
  }
  const mine = annotations.map(a => ({ label: a.label }));
  return mine.some(a => a.label === label.name)
    ? mine.filter(a => a.label !== label.name)
    : [...mine, { label: label.name }];
}
