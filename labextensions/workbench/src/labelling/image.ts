/** Image classification: the image, its labels (one, or several when multi-label). */

import { el } from '../dom';
import { classify, Content, IEditor, IEditorHost, labelBadges } from './editor';
import { ILabel, ISample } from './model';

export class ImageClassificationEditor implements IEditor {
  readonly node = el('div', 'jp-WorkbenchLabel-classify');
  readonly help: [string, string][] = [];

  constructor(private _host: IEditorHost) {
    this.node.append(this._badges, this._frame);
  }

  show(sample: ISample, content: Content): void {
    this._sample = sample;
    if (typeof content !== 'string') {
      content.className = 'jp-WorkbenchLabel-img';
      content.alt = sample.key;
      this._frame.replaceChildren(content);
    }
    this.render();
  }

  render(): void {
    if (!this._sample) {
      return;
    }
    const badges = labelBadges(this._sample.annotations, l =>
      this._host.color(l)
    );
    this._badges.replaceWith(badges);
    this._badges = badges;
  }

  key(key: string): boolean {
    return false;
  }

  label(label: ILabel): void {
    if (!this._sample) {
      return;
    }
    const multi = this._host.multiLabel;
    this._host.change(classify(this._sample.annotations, label, multi), {
      advance: !multi
    });
  }

  layout(): void {
    // the image fits the frame by CSS
  }

  private _sample: ISample | null = null;
  private _frame = el('div', 'jp-WorkbenchLabel-frame');
  private _badges: HTMLElement = el('div');
}
