/** The datasets API's models as the labelling view uses them, and their paths. */

import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export type DatasetType =
  | 'image_classification'
  | 'object_detection'
  | 'text_classification'
  | 'named_entities';

export const DATASET_TYPES: { type: DatasetType; label: string }[] = [
  { type: 'image_classification', label: 'Image classification' },
  { type: 'object_detection', label: 'Object detection' },
  { type: 'text_classification', label: 'Text classification' },
  { type: 'named_entities', label: 'Named entities' }
];

/** A label of the dataset's label set. */
export interface ILabel {
  name: string;
  color: string;
  key: string;
}

/** One annotation of a sample: a label, with a box or a span for those types. */
export interface IAnnotation {
  label: string;
  box?: number[];
  span?: number[];
  annotated_by?: string;
  confidence?: number | null;
  created?: string;
}

/** A sample (GET datasets/o/n/samples). */
export interface ISample {
  id: number;
  key: string;
  sha256: string;
  size: number;
  media_type: string;
  width: number;
  height: number;
  text?: string;
  annotations: IAnnotation[];
  status: string;
  annotated_by: string;
  confidence: number | null;
  review: string;
  review_comment: string;
  reviewed_by: string;
  task: number | string | null;
  assignee: string;
  updated: string;
}

/** GET datasets/o/n/stats. */
export interface IStats {
  samples: number;
  labelled: number;
  unlabelled: number;
  prelabelled: number;
  to_review: number;
  accepted: number;
  rejected: number;
  per_label: Record<string, number>;
}

/** A dataset (GET datasets, GET datasets/o/n). */
export interface IDataset {
  owner: string;
  name: string;
  description: string;
  workspace: string;
  type: DatasetType;
  multi_label: boolean;
  labels: ILabel[];
  samples: number;
  size: number;
  created: string;
  updated: string;
  stats?: IStats;
}

/** A page of samples: keyset paging by id. */
export interface ISamplePage {
  samples: ISample[];
  next: number | null;
  total?: number;
}

/** The path of a dataset (or below it) under <base_url>/workbench/. */
export function datasetPath(
  owner: string,
  name: string,
  ...rest: (string | number)[]
): string {
  return [
    'datasets',
    encodeURIComponent(owner),
    encodeURIComponent(name),
    ...rest.map(String)
  ].join('/');
}

/** The URL of a sample's file: the browser keeps it (ETag, immutable). */
export function contentUrl(owner: string, name: string, id: number): string {
  const settings = ServerConnection.makeSettings();
  return URLExt.join(
    settings.baseUrl,
    'workbench',
    datasetPath(owner, name, 'samples', id, 'content')
  );
}

/** The user of this JupyterLab (the instance's owner). */
export function currentUser(): string {
  return PageConfig.getOption('hubUser') || '';
}

export function isImageType(type: DatasetType): boolean {
  return type === 'image_classification' || type === 'object_detection';
}

/** Whether a model wrote the annotation (a pre-label), not a person. */
export function byModel(annotation: IAnnotation): boolean {
  return (annotation.annotated_by || '').startsWith('model:');
}

/** A person's new annotation: what the platform completes (who, when). */
export function annotation(
  label: string,
  where: { box?: number[]; span?: number[] } = {}
): IAnnotation {
  return { label, ...where };
}

/** "93%" for a model's confidence, "" for none. */
export function confidenceText(value: number | null | undefined): string {
  return typeof value === 'number' ? `${Math.round(value * 100)}%` : '';
}

/** The same annotations (labels, boxes, spans, and whether a model made them). */
export function sameAnnotations(a: IAnnotation[], b: IAnnotation[]): boolean {
  const plain = (list: IAnnotation[]) =>
    JSON.stringify(
      list.map(x => [x.label, x.box || null, x.span || null, byModel(x)])
    );
  return plain(a) === plain(b);
}
