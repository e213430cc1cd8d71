/** Named entities: spans of a text tagged with labels, chosen with the mouse or word by word. */

import { el } from '../dom';
import { Content, IEditor, IEditorHost } from './editor';
import { byModel, confidenceText, IAnnotation, ILabel, ISample } from './model';

/** Words (letters, digits, marks, '_') and single other characters. */
const TOKEN = /[\p{L}\p{N}\p{M}_]+|\S/gu;

interface IToken {
  start: number;
  end: number;
}

/**
 * Offsets in a text: the platform counts characters (code points), JavaScript UTF-16 units;
 * they differ only after characters beyond the BMP (emoji).
 */
class Offsets {
  constructor(text: string) {
    if (!/[\uD800-\uDFFF]/.test(text)) {
      return;
    }
    this._units = [];
    this._points = new Array(text.length + 1);
    let point = 0;
    for (let unit = 0; unit < text.length; point++) {
      this._units.push(unit);
      const code = text.codePointAt(unit)!;
      const width = code > 0xffff ? 2 : 1;
      for (let i = 0; i < width; i++) {
        this._points[unit + i] = point;
      }
      unit += width;
    }
    this._units.push(text.length);
    this._points[text.length] = point;
  }

  /** The UTF-16 offset of a character offset. */
  unit(point: number): number {
    if (!this._units) {
      return point;
    }
    return this._units[Math.min(Math.max(point, 0), this._units.length - 1)];
  }

  /** The character offset of a UTF-16 offset. */
  point(unit: number): number {
    return this._points ? this._points[unit] : unit;
  }

  private _units: number[] | null = null;
  private _points: number[] | null = null;
}

export class EntityEditor implements IEditor {
  readonly node = el('div', 'jp-WorkbenchLabel-entities');
  readonly help: [string, string][] = [
    ['mouse', 'select words, then press a label’s key'],
    ['Alt+→, Alt+←', 'select the next, previous word'],
    ['Alt+Shift+→, Alt+Shift+←', 'extend the selection by a word'],
    ['a label’s key', 'tag the selection with the label'],
    ['Delete', 'remove the entities in the selection'],
    ['Esc', 'clear the selection']
  ];

  constructor(private _host: IEditorHost) {
    this._body.dataset.field = 'text';
    this.node.append(this._body);
    this._body.addEventListener('mouseup', () => this._takeSelection());
  }

  show(sample: ISample, content: Content): void {
    this._sample = sample;
    this._text = typeof content === 'string' ? content : '';
    this._offsets = new Offsets(this._text);
    this._tokens = [];
    for (const match of this._text.matchAll(TOKEN)) {
      this._tokens.push({
        start: match.index!,
        end: match.index! + match[0].length
      });
    }
    this._cursor = -1;
    this._anchor = -1;
    this._mouse = null;
    this._body.scrollTop = 0;
    this.render();
  }

  render(): void {
    const sample = this._sample;
    if (!sample) {
      return;
    }
    const text = this._text;
    const entities = sample.annotations
      .map((a, index) => ({
        a,
        index,
        start: this._offsets.unit((a.span || [0, 0])[0]),
        end: this._offsets.unit((a.span || [0, 0])[1])
      }))
      .filter(e => e.end > e.start)
      .sort((x, y) => x.start - y.start);
    const cuts = new Set<number>([0, text.length]);
    for (const t of this._tokens) {
      cuts.add(t.start);
      cuts.add(t.end);
    }
    for (const e of entities) {
      cuts.add(e.start);
      cuts.add(e.end);
    }
    const bounds = [...cuts].sort((x, y) => x - y);
    const nodes: HTMLElement[] = [];
    this._segments = [];
    let next = 0; // the first entity that may still hold a segment
    for (let i = 0; i + 1 < bounds.length; i++) {
      const start = bounds[i];
      const end = bounds[i + 1];
      const segment = el(
        'span',
        'jp-WorkbenchLabel-seg',
        text.slice(start, end)
      );
      segment.dataset.start = String(start);
      segment.dataset.end = String(end);
      while (next < entities.length && entities[next].end <= start) {
        next++;
      }
      const entity = entities
        .slice(next)
        .find(e => e.start <= start && end <= e.end);
      if (entity) {
        segment.classList.add('jp-WorkbenchLabel-entity');
        segment.style.setProperty(
          '--jp-label-color',
          this._host.color(entity.a.label)
        );
        if (byModel(entity.a)) {
          segment.classList.add('jp-mod-prelabel');
        }
      }
      nodes.push(segment);
      this._segments.push(segment);
      for (const e of entities) {
        if (e.end === end && e.start < end) {
          nodes.push(this._tag(e.a));
        }
      }
    }
    this._body.replaceChildren(...nodes);
    this.node.dataset.entities = String(entities.length);
    this._shown = null;
    this._showSelection();
  }

  key(key: string): boolean {
    if (!this._sample || !this._tokens.length) {
      return false;
    }
    switch (key) {
      case 'Alt+ArrowRight':
      case 'Alt+ArrowLeft': {
        const step = key === 'Alt+ArrowRight' ? 1 : -1;
        this._cursor =
          this._cursor < 0
            ? step > 0
              ? 0
              : this._tokens.length - 1
            : this._clamp(this._cursor + step);
        this._anchor = this._cursor;
        this._forgetMouse();
        this._showSelection();
        return true;
      }
      case 'Alt+Shift+ArrowRight':
      case 'Alt+Shift+ArrowLeft': {
        const step = key === 'Alt+Shift+ArrowRight' ? 1 : -1;
        if (this._cursor < 0) {
          this._cursor = this._anchor = 0;
        } else {
          if (this._anchor < 0) {
            this._anchor = this._cursor;
          }
          this._cursor = this._clamp(this._cursor + step);
        }
        this._forgetMouse();
        this._showSelection();
        return true;
      }
      case 'Escape':
        if (this._anchor < 0 && !this._mouse) {
          return false;
        }
        this._anchor = -1;
        this._forgetMouse();
        this._showSelection();
        return true;
      case 'Delete': {
        const range = this._selection();
        if (!range) {
          return false;
        }
        const [start, end] = range;
        const kept = this._sample.annotations.filter(a => {
          const [s, e] = (a.span || [0, 0]).map(v => this._offsets.unit(v));
          return e <= start || s >= end;
        });
        if (kept.length !== this._sample.annotations.length) {
          this._host.change(kept);
        }
        return true;
      }
    }
    return false;
  }

  label(label: ILabel): void {
    const sample = this._sample;
    const range = this._selection();
    if (!sample || !range) {
      return;
    }
    const [start, end] = range;
    const kept = sample.annotations.filter(a => {
      const [s, e] = (a.span || [0, 0]).map(v => this._offsets.unit(v));
      return e <= start || s >= end;
    });
    const span = [this._offsets.point(start), this._offsets.point(end)];
    const entities = [...kept, { label: label.name, span }].sort(
      (x, y) => x.span![0] - y.span![0]
    );
    this._anchor = -1;
    this._forgetMouse();
    this._host.change(entities);
  }

  layout(): void {
    // the text wraps by CSS
  }

  /** An entity's tag after its last word: its label (and a model's confidence). */
  private _tag(a: IAnnotation): HTMLElement {
    const confidence = byModel(a) ? confidenceText(a.confidence) : '';
    const tag = el(
      'span',
      'jp-WorkbenchLabel-tag',
      confidence ? `${a.label} ${confidence}` : a.label
    );
    tag.dataset.label = a.label;
    tag.dataset.span = (a.span || []).join(',');
    tag.style.setProperty('--jp-label-color', this._host.color(a.label));
    if (byModel(a)) {
      tag.dataset.prelabel = '1';
      tag.dataset.confidence = String(a.confidence ?? '');
    }
    return tag;
  }

  private _clamp(token: number): number {
    return Math.min(this._tokens.length - 1, Math.max(0, token));
  }

  /** The selection, in UTF-16 offsets: the mouse's, else the keyboard's words. */
  private _selection(): [number, number] | null {
    if (this._mouse) {
      return this._mouse;
    }
    if (this._anchor < 0 || this._cursor < 0) {
      return null;
    }
    const first = Math.min(this._anchor, this._cursor);
    const last = Math.max(this._anchor, this._cursor);
    return [this._tokens[first].start, this._tokens[last].end];
  }

  /** Mark the selected words (and scroll the cursor into view). */
  private _showSelection(): void {
    for (const segment of this._shown || []) {
      segment.classList.remove('jp-mod-selected', 'jp-mod-cursor');
    }
    this._shown = [];
    const range = this._mouse ? null : this._selection();
    if (range) {
      const [start, end] = range;
      for (const segment of this._segments) {
        const s = Number(segment.dataset.start);
        if (s >= end) {
          break;
        }
        if (s >= start) {
          segment.classList.add('jp-mod-selected');
          this._shown.push(segment);
        }
      }
    }
    const cursor = this._tokens[this._cursor];
    if (cursor) {
      const segment = this._segments.find(
        s => Number(s.dataset.start) === cursor.start
      );
      if (segment) {
        segment.classList.add('jp-mod-cursor');
        this._shown.push(segment);
        segment.scrollIntoView({ block: 'nearest' });
      }
    }
    const selected = this._selection();
    this.node.dataset.selection = selected
      ? selected.map(v => this._offsets.point(v)).join(',')
      : '';
  }

  /** Take the mouse's selection of words (widened to whole words). */
  private _takeSelection(): void {
    const selection = window.getSelection();
    if (!selection || selection.isCollapsed || !selection.rangeCount) {
      return;
    }
    const range = selection.getRangeAt(0);
    if (!this._body.contains(range.commonAncestorContainer)) {
      return;
    }
    let start = this._offsetAt(range.startContainer, range.startOffset);
    let end = this._offsetAt(range.endContainer, range.endOffset);
    const inside = this._tokens.filter(t => t.end > start && t.start < end);
    if (!inside.length) {
      return;
    }
    start = inside[0].start;
    end = inside[inside.length - 1].end;
    this._mouse = [start, end];
    this._cursor = this._tokens.indexOf(inside[inside.length - 1]);
    this._anchor = this._tokens.indexOf(inside[0]);
    this.node.dataset.selection = [start, end]
      .map(v => this._offsets.point(v))
      .join(',');
  }

  /** The text offset of a DOM position inside the text. */
  private _offsetAt(node: Node, offset: number): number {
    const segment = (
      node.nodeType === Node.TEXT_NODE ? node.parentElement : (node as Element)
    )?.closest('[data-start]') as HTMLElement | null;
    if (segment && node.nodeType === Node.TEXT_NODE) {
      return Number(segment.dataset.start) + offset;
    }
    // a position between elements: the start of the segment after it
    const children = Array.from(node.childNodes);
    for (const child of children.slice(offset)) {
      if (child instanceof HTMLElement && child.dataset.start) {
        return Number(child.dataset.start);
      }
    }
    return segment ? Number(segment.dataset.end) : this._text.length;
  }

  private _forgetMouse(): void {
    if (this._mouse) {
      this._mouse = null;
      window.getSelection()?.removeAllRanges();
    }
  }

  private _sample: ISample | null = null;
  private _text = '';
  private _offsets = new Offsets('');
  private _tokens: IToken[] = [];
  private _segments: HTMLElement[] = [];
  private _shown: HTMLElement[] | null = null;
  private _cursor = -1;
  private _anchor = -1;
  private _mouse: [number, number] | null = null;
  private _body = el('div', 'jp-WorkbenchLabel-text');
}
