/**
 * Model pickers' contents: one list with a "Chat and code actions" section and an "Inline
 * completions" section, so a single pick both chooses the model and says what for. Models with
 * the `insert` capability (fill-in-the-middle) lead the completion section: they are the fast
 * choice for ghost text. Pure, unit-tested.
 */
import type { ModelEntry, ModelKind, ModelsReply } from './protocol';

export interface ModelPickItem {
  label: string;
  description?: string;
  detail?: string;
  /** A section header, not a choice. */
  separator?: boolean;
  model?: string;
  modelKind?: ModelKind;
  picked?: boolean;
}

/** `13780173734` → `12.8 GB`. */
export function formatBytes(bytes: number | undefined): string {
  if (typeof bytes !== 'number' || !Number.isFinite(bytes) || bytes <= 0) {
    return '';
  }
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 100 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

function describe(model: ModelEntry): string {
  const parts = [formatBytes(model.sizeBytes), model.quantization ?? ''];
  if (model.contextLength) {
    parts.push(`${Math.round(model.contextLength / 1024)}k context`);
  }
  return parts.filter((p) => p).join(' · ');
}

function detail(model: ModelEntry): string {
  const caps = (model.capabilities ?? []).join(', ');
  return [model.loaded ? 'loaded' : '', caps ? `capabilities: ${caps}` : ''].filter((p) => p).join(' — ');
}

/** Valid entries only: the server's list is data from outside, so skip anything malformed. */
export function cleanModels(reply: unknown): ModelsReply {
  const raw = reply && typeof reply === 'object' ? (reply as Partial<ModelsReply>) : {};
  const models = Array.isArray(raw.models)
    ? raw.models.filter((m): m is ModelEntry => !!m && typeof m === 'object' && typeof m.name === 'string' && m.name !== '')
    : [];
  const current = raw.current && typeof raw.current === 'object' ? raw.current : {};
  const error = typeof raw.error === 'string' && raw.error ? raw.error : undefined;
  return error ? { models, current, error } : { models, current };
}

function item(model: ModelEntry, kind: ModelKind, current: string | undefined): ModelPickItem {
  const isCurrent = model.name === current;
  return {
    label: `${isCurrent ? '$(check) ' : model.loaded ? '$(circle-filled) ' : '$(circle-outline) '}${model.name}`,
    description: describe(model),
    detail: detail(model) || undefined,
    model: model.name,
    modelKind: kind,
    picked: isCurrent,
  };
}

/** Items for "Koma: Select Model"; `only` limits the list to one kind. */
export function modelPickItems(reply: ModelsReply, only?: ModelKind): ModelPickItem[] {
  const items: ModelPickItem[] = [];
  // null means "the server's default": nothing to mark then.
  const chatCurrent = reply.current?.model ?? undefined;
  const completionCurrent = reply.current?.completionModel || chatCurrent;
  if (only !== 'completion') {
    items.push({ label: 'Chat and code actions', separator: true });
    for (const model of reply.models) {
      items.push(item(model, 'chat', chatCurrent));
    }
  }
  if (only !== 'chat') {
    items.push({ label: 'Inline completions', separator: true });
    const fim = (m: ModelEntry): number => ((m.capabilities ?? []).includes('insert') ? 0 : 1);
    const sorted = [...reply.models].sort((a, b) => fim(a) - fim(b));
    for (const model of sorted) {
      items.push(item(model, 'completion', completionCurrent));
    }
  }
  return items;
}

/** Items for preload / unload: each model once, loaded ones first for unload. */
export function lifecycleItems(reply: ModelsReply, action: 'preload' | 'unload'): ModelPickItem[] {
  const models = [...reply.models];
  if (action === 'unload') {
    models.sort((a, b) => Number(!!b.loaded) - Number(!!a.loaded));
  }
  return models.map((m) => ({
    label: m.name,
    description: [m.loaded ? 'loaded' : 'not loaded', formatBytes(m.sizeBytes)].filter((p) => p).join(' · '),
    model: m.name,
  }));
}
