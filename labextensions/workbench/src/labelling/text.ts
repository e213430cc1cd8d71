/** Text classification: the text, its labels (one, or several when multi-label). */

import { el } from '../dom';
import { classify, Content, IEditor, IEditorHost, labelBadges } from './editor';
import { ILabel, ISample } from './model';

export class TextClassificationEditor implements IEditor {
  readonly node = el('div', 'jp-WorkbenchLabel-classify');
  readonly help: [string, string][] = [];

  constructor(private _host: IEditorHost) {
    this._text.dataset.field = 'text';
    this.node.append(this._badges, this._text);
  }

  show(sample: ISample, content: Content): void {
    this._sample = sample;
    this._text.textContent = typeof content === 'string' ? content : '';
    this._text.scrollTop = 0;
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
    // the text wraps by CSS
  }

  private _sample: ISample | null = null;
  private _text = el('div', 'jp-WorkbenchLabel-text');
  private _badges: HTMLElement = el('div');
}
