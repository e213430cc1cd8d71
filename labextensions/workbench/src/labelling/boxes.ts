/** Object detection: boxes over the image in an SVG layer, drawn with the mouse or the keyboard. */

import { el } from '../dom';
import { Content, IEditor, IEditorHost } from './editor';
import { labelForKey } from './keys';
import { byModel, confidenceText, IAnnotation, ILabel, ISample } from './model';

const SVG_NS = 'http://www.w3.org/2000/svg';
const ZOOMS = [0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8];
/** Boxes drawn smaller than this (screen pixels) are taken for clicks. */
const MIN_DRAWN_PX = 4;
const CORNERS = ['nw', 'ne', 'sw', 'se'] as const;
type Corner = (typeof CORNERS)[number];

/** A drag in progress: drawing a new box, moving or resizing one. */
interface IDrag {
  kind: 'draw' | 'move' | 'resize';
  index: number;
  corner?: Corner;
  start: [number, number];
  from: number[];
  box: number[];
}

const MOVES: Record<string, [number, number]> = {
  ArrowLeft: [-1, 0],
  ArrowRight: [1, 0],
  ArrowUp: [0, -1],
  ArrowDown: [0, 1]
};

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number> = {}
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    node.setAttribute(name, String(value));
  }
  return node;
}

export class BoxEditor implements IEditor {
  readonly node = el('div', 'jp-WorkbenchLabel-boxes');
  readonly help: [string, string][] = [
    ['n', 'add a box in the middle, with the last label chosen'],
    [
      'mouse',
      'drag on the image: draw a box; drag a box: move it; a corner: resize'
    ],
    ['Tab, Shift+Tab', 'select the next, previous box'],
    ['arrows', 'move the selected box'],
    ['Shift+arrows', 'resize the selected box'],
    [
      'a label’s key',
      'label the selected box (none selected: label of new boxes)'
    ],
    ['Delete', 'remove the selected box'],
    ['Esc', 'deselect: arrows go to other samples again'],
    ['+, -', 'zoom in, out']
  ];

  constructor(private _host: IEditorHost) {
    this._svg.classList.add('jp-WorkbenchLabel-svg');
    this._stage.append(this._svg);
    this.node.append(this._stage);
    this._svg.addEventListener('pointerdown', this._onDown);
    this._svg.addEventListener('pointermove', this._onMove);
    this._svg.addEventListener('pointerup', this._onUp);
    this._svg.addEventListener('pointercancel', () => {
      this._drag = null;
      this.render();
    });
  }

  /** The index of the selected box, -1 for none. */
  get selected(): number {
    return this._selected;
  }

  show(sample: ISample, content: Content): void {
    this._sample = sample;
    this._selected = -1;
    this._drag = null;
    if (typeof content !== 'string') {
      content.className = 'jp-WorkbenchLabel-img';
      content.alt = sample.key;
      content.draggable = false;
      if (this._img !== content) {
        this._img?.remove();
        this._stage.prepend(content);
        this._img = content;
      }
      this._width = sample.width || content.naturalWidth || 1;
      this._height = sample.height || content.naturalHeight || 1;
    }
    this._svg.setAttribute('viewBox', `0 0 ${this._width} ${this._height}`);
    this.layout();
  }

  layout(): void {
    const width = this.node.clientWidth;
    const height = this.node.clientHeight;
    if (width > 0 && height > 0) {
      this._fit = Math.min(width / this._width, height / this._height);
    }
    const scale = this._fit * this._zoom;
    this._stage.style.width = `${Math.max(1, this._width * scale)}px`;
    this._stage.style.height = `${Math.max(1, this._height * scale)}px`;
    this.node.dataset.zoom = String(this._zoom);
    this.render();
  }

  render(): void {
    const sample = this._sample;
    if (!sample) {
      return;
    }
    const boxes = sample.annotations;
    if (this._selected >= boxes.length) {
      this._selected = -1;
    }
    // screen pixels per image pixel: text and handles keep their size at any zoom
    const scale = Math.max(this._fit * this._zoom, 1e-3);
    const groups = boxes.map((a, index) => {
      const box =
        this._drag && this._drag.index === index ? this._drag.box : a.box;
      return this._group(a, box || [0, 0, 0, 0], index, scale);
    });
    if (this._drag && this._drag.kind === 'draw') {
      const label = this._host.activeLabel?.name || '';
      groups.push(
        this._group({ label }, this._drag.box, boxes.length, scale, true)
      );
    }
    this._svg.replaceChildren(...groups);
    this.node.dataset.boxes = String(boxes.length);
    this.node.dataset.selected = String(this._selected);
  }

  key(key: string): boolean {
    const sample = this._sample;
    if (!sample) {
      return false;
    }
    const boxes = sample.annotations;
    if ((key === 'n' || key === 'Insert') && !this._isLabelKey(key)) {
      this._addBox();
      return true;
    }
    if (key === '+' || key === '=') {
      this._setZoom(1);
      return true;
    }
    if (key === '-') {
      this._setZoom(-1);
      return true;
    }
    if (key === 'Tab' || key === 'Shift+Tab') {
      if (boxes.length) {
        const step = key === 'Tab' ? 1 : -1;
        const from = this._selected < 0 && step < 0 ? 0 : this._selected;
        this._selected = (from + step + boxes.length) % boxes.length;
        this.render();
      }
      return true;
    }
    if (this._selected < 0) {
      return false;
    }
    if (key === 'Escape') {
      this._selected = -1;
      this.render();
      return true;
    }
    if (key === 'Delete') {
      const index = this._selected;
      this._selected = -1;
      this._host.change(boxes.filter((_, i) => i !== index));
      return true;
    }
    const resize = key.startsWith('Shift+');
    const move = MOVES[resize ? key.slice(6) : key];
    if (move) {
      this._nudge(move, resize);
      return true;
    }
    return false;
  }

  label(label: ILabel): void {
    const sample = this._sample;
    if (!sample || this._selected < 0) {
      return;
    }
    const index = this._selected;
    const boxes = sample.annotations.map((a, i) =>
      i === index ? { label: label.name, box: a.box } : a
    );
    this._host.change(boxes);
  }

  private _isLabelKey(key: string): boolean {
    return !!labelForKey(this._host.labels, key);
  }

  private _group(
    a: IAnnotation,
    box: number[],
    index: number,
    scale: number,
    drawing = false
  ): SVGGElement {
    const [x1, y1, x2, y2] = box;
    const color = this._host.color(a.label);
    const group = svg('g', { class: 'jp-WorkbenchLabel-box' });
    group.dataset.index = String(index);
    group.dataset.label = a.label;
    group.dataset.box = box.map(v => Math.round(v * 100) / 100).join(',');
    group.style.setProperty('--jp-label-color', color);
    const model = byModel(a);
    if (model) {
      group.dataset.prelabel = '1';
    }
    if (drawing) {
      group.dataset.drawing = '1';
    }
    const selected = index === this._selected && !drawing;
    if (selected) {
      group.classList.add('jp-mod-selected');
    }
    group.append(
      svg('rect', {
        class: 'jp-WorkbenchLabel-boxRect',
        x: x1,
        y: y1,
        width: Math.max(0, x2 - x1),
        height: Math.max(0, y2 - y1)
      })
    );
    const confidence = model ? confidenceText(a.confidence) : '';
    const caption = svg('text', {
      class: 'jp-WorkbenchLabel-boxText',
      x: x1 + 3 / scale,
      y: y1 + 13 / scale,
      'font-size': 12 / scale
    });
    caption.textContent = confidence ? `${a.label} ${confidence}` : a.label;
    if (confidence) {
      group.dataset.confidence = String(a.confidence);
    }
    group.append(caption);
    if (selected) {
      const size = 9 / scale;
      for (const corner of CORNERS) {
        const handle = svg('rect', {
          class: 'jp-WorkbenchLabel-handle',
          x: (corner.endsWith('w') ? x1 : x2) - size / 2,
          y: (corner.startsWith('n') ? y1 : y2) - size / 2,
          width: size,
          height: size
        });
        handle.dataset.handle = corner;
        group.append(handle);
      }
    }
    return group;
  }

  private _addBox(): void {
    const sample = this._sample!;
    const label = this._host.activeLabel;
    if (!label) {
      return;
    }
    const w = this._width;
    const h = this._height;
    const box = [
      Math.round(w / 3),
      Math.round(h / 3),
      Math.round((2 * w) / 3),
      Math.round((2 * h) / 3)
    ];
    if (box[2] <= box[0]) {
      box[2] = Math.min(w, box[0] + 1);
    }
    if (box[3] <= box[1]) {
      box[3] = Math.min(h, box[1] + 1);
    }
    this._selected = sample.annotations.length;
    this._host.change([...sample.annotations, { label: label.name, box }]);
  }

  /** Move the selected box (or resize it: its right and bottom edges) by a step. */
  private _nudge([dx, dy]: [number, number], resize: boolean): void {
    const sample = this._sample!;
    const index = this._selected;
    const a = sample.annotations[index];
    if (!a || !a.box) {
      return;
    }
    const step = Math.max(
      1,
      Math.round(Math.min(this._width, this._height) / 100)
    );
    const [x1, y1, x2, y2] = a.box;
    let box: number[];
    if (resize) {
      box = [
        x1,
        y1,
        Math.min(this._width, Math.max(x1 + 1, x2 + dx * step)),
        Math.min(this._height, Math.max(y1 + 1, y2 + dy * step))
      ];
    } else {
      const mx = Math.min(Math.max(dx * step, -x1), this._width - x2);
      const my = Math.min(Math.max(dy * step, -y1), this._height - y2);
      box = [x1 + mx, y1 + my, x2 + mx, y2 + my];
    }
    if (box.every((v, i) => v === a.box![i])) {
      return;
    }
    const boxes = sample.annotations.map((b, i) =>
      i === index ? { label: a.label, box } : b
    );
    this._host.change(boxes, {
      merge: `${resize ? 'resize' : 'move'}:${sample.id}:${index}`
    });
  }

  private _setZoom(direction: number): void {
    const at = ZOOMS.indexOf(this._zoom);
    const next = ZOOMS[Math.min(ZOOMS.length - 1, Math.max(0, at + direction))];
    if (next !== this._zoom) {
      this._zoom = next;
      this.layout();
    }
  }

  /** The image pixel under the pointer. */
  private _point(event: PointerEvent): [number, number] {
    const rect = this._svg.getBoundingClientRect();
    const x = ((event.clientX - rect.left) / rect.width) * this._width;
    const y = ((event.clientY - rect.top) / rect.height) * this._height;
    return [
      Math.min(this._width, Math.max(0, x)),
      Math.min(this._height, Math.max(0, y))
    ];
  }

  private _onDown = (event: PointerEvent) => {
    const sample = this._sample;
    if (!sample || event.button !== 0) {
      return;
    }
    event.preventDefault();
    const target = event.target as Element;
    const point = this._point(event);
    const handle = target.closest('[data-handle]') as SVGElement | null;
    const group = target.closest('g[data-index]') as SVGGElement | null;
    if (handle && group) {
      const index = Number(group.dataset.index);
      const box = sample.annotations[index].box!;
      this._drag = {
        kind: 'resize',
        index,
        corner: handle.dataset.handle as Corner,
        start: point,
        from: box,
        box
      };
    } else if (group && !group.dataset.drawing) {
      const index = Number(group.dataset.index);
      this._selected = index;
      const box = sample.annotations[index].box!;
      this._drag = { kind: 'move', index, start: point, from: box, box };
    } else {
      this._selected = -1;
      const box = [point[0], point[1], point[0], point[1]];
      this._drag = { kind: 'draw', index: -1, start: point, from: box, box };
    }
    this._svg.setPointerCapture(event.pointerId);
    this.render();
  };

  private _onMove = (event: PointerEvent) => {
    const drag = this._drag;
    if (!drag) {
      return;
    }
    const [px, py] = this._point(event);
    const [x1, y1, x2, y2] = drag.from;
    if (drag.kind === 'draw') {
      const [sx, sy] = drag.start;
      drag.box = [
        Math.min(sx, px),
        Math.min(sy, py),
        Math.max(sx, px),
        Math.max(sy, py)
      ];
    } else if (drag.kind === 'move') {
      const dx = Math.min(Math.max(px - drag.start[0], -x1), this._width - x2);
      const dy = Math.min(Math.max(py - drag.start[1], -y1), this._height - y2);
      drag.box = [x1 + dx, y1 + dy, x2 + dx, y2 + dy];
    } else {
      const corner = drag.corner!;
      const left = corner.endsWith('w') ? px : x1;
      const right = corner.endsWith('w') ? x2 : px;
      const top = corner.startsWith('n') ? py : y1;
      const bottom = corner.startsWith('n') ? y2 : py;
      drag.box = [
        Math.min(left, right),
        Math.min(top, bottom),
        Math.max(left, right),
        Math.max(top, bottom)
      ];
    }
    this.render();
  };

  private _onUp = (event: PointerEvent) => {
    const drag = this._drag;
    const sample = this._sample;
    this._drag = null;
    if (!drag || !sample) {
      return;
    }
    const box = drag.box.map(v => Math.round(v));
    const scale = this._fit * this._zoom;
    const small =
      (box[2] - box[0]) * scale < MIN_DRAWN_PX ||
      (box[3] - box[1]) * scale < MIN_DRAWN_PX;
    if (drag.kind === 'draw') {
      const label = this._host.activeLabel;
      if (small || !label) {
        this.render();
        return;
      }
      this._selected = sample.annotations.length;
      this._host.change([...sample.annotations, { label: label.name, box }]);
      return;
    }
    const a = sample.annotations[drag.index];
    if (small || box.every((v, i) => v === Math.round(drag.from[i]))) {
      this.render();
      return;
    }
    this._host.change(
      sample.annotations.map((b, i) =>
        i === drag.index ? { label: a.label, box } : b
      )
    );
  };

  private _sample: ISample | null = null;
  private _img: HTMLImageElement | null = null;
  private _stage = el('div', 'jp-WorkbenchLabel-boxStage');
  private _svg = svg('svg', { preserveAspectRatio: 'none' });
  private _selected = -1;
  private _drag: IDrag | null = null;
  private _width = 1;
  private _height = 1;
  private _fit = 1;
  private _zoom = 1;
}
