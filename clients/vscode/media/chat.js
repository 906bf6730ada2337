// @ts-check
/**
 * The chat panel's script. It draws what the extension sends (`state`, `turn`, `models`) and
 * reports clicks back; the conversation itself lives in the extension host. HTML it inserts comes
 * from the extension's safe Markdown renderer; everything else is set as text.
 */
(function () {
  /** @typedef {import('../src/protocol').ToWebview} ToWebview */
  /** @typedef {import('../src/protocol').FromWebview} FromWebview */
  /** @typedef {import('../src/protocol').TurnView} TurnView */
  /** @typedef {import('../src/protocol').ToolView} ToolView */

  // @ts-expect-error acquireVsCodeApi is a global the webview host provides.
  const vscode = acquireVsCodeApi();

  /** @param {FromWebview} message */
  function post(message) {
    vscode.postMessage(message);
  }

  /** @param {string} id */
  function byId(id) {
    const element = document.getElementById(id);
    if (!element) {
      throw new Error(`missing #${id}`);
    }
    return element;
  }

  const transcript = byId('transcript');
  const empty = byId('empty');
  const prompt = /** @type {HTMLTextAreaElement} */ (byId('prompt'));
  const form = /** @type {HTMLFormElement} */ (byId('composer'));
  const send = /** @type {HTMLButtonElement} */ (byId('send'));
  const stop = /** @type {HTMLButtonElement} */ (byId('stop'));
  const modelSelect = /** @type {HTMLSelectElement} */ (byId('model-select'));
  const newChat = byId('new-chat');
  const hint = byId('hint');

  // The draft survives the view being hidden (the webview is destroyed then).
  const saved = /** @type {{draft?: string} | undefined} */ (vscode.getState());
  if (saved && typeof saved.draft === 'string') {
    prompt.value = saved.draft;
  }

  /**
   * @param {string} tag
   * @param {string} [className]
   * @param {string} [text]
   */
  function el(tag, className, text) {
    const element = document.createElement(tag);
    if (className) {
      element.className = className;
    }
    if (text !== undefined) {
      element.textContent = text;
    }
    return element;
  }

  /** @param {boolean} busy */
  function setBusy(busy) {
    stop.hidden = !busy;
    send.disabled = busy;
    hint.textContent = busy ? 'Generating…' : '';
  }

  /** @param {import('../src/protocol').ChatMetrics | undefined} metrics */
  function describeMetrics(metrics) {
    if (!metrics) {
      return '';
    }
    const parts = [];
    if (typeof metrics.tokensPerSecond === 'number' && metrics.tokensPerSecond > 0) {
      parts.push(`${metrics.tokensPerSecond.toFixed(1)} tok/s`);
    }
    if (typeof metrics.ttftMs === 'number') {
      parts.push(`first token ${Math.round(metrics.ttftMs)} ms`);
    }
    if (typeof metrics.totalMs === 'number') {
      parts.push(`${(metrics.totalMs / 1000).toFixed(1)} s`);
    }
    return parts.join(' · ');
  }

  /** Build the skeleton of a turn once; later updates fill its parts in place. */
  /** @param {TurnView} turn */
  function createTurn(turn) {
    const section = el('section', 'turn');
    section.dataset.turnId = String(turn.id);
    section.appendChild(el('div', 'prompt', turn.prompt));
    const reasoning = /** @type {HTMLDetailsElement} */ (el('details', 'reasoning'));
    reasoning.appendChild(el('summary', 'reasoning-summary', 'Thinking'));
    reasoning.appendChild(el('div', 'reasoning-body markdown'));
    reasoning.hidden = true;
    section.appendChild(reasoning);
    section.appendChild(el('div', 'tools'));
    const commentary = el('div', 'commentary');
    commentary.hidden = true;
    section.appendChild(commentary);
    section.appendChild(el('div', 'answer markdown'));
    const warning = el('div', 'warning');
    warning.hidden = true;
    section.appendChild(warning);
    const error = el('div', 'error');
    error.hidden = true;
    section.appendChild(error);
    section.appendChild(el('div', 'meta'));
    transcript.appendChild(section);
    return section;
  }

  /** @param {HTMLElement} container @param {ToolView[]} tools */
  function drawTools(container, tools) {
    while (container.children.length > tools.length) {
      container.lastElementChild?.remove();
    }
    tools.forEach((tool, index) => {
      let details = /** @type {HTMLDetailsElement | undefined} */ (container.children[index]);
      if (!details) {
        details = /** @type {HTMLDetailsElement} */ (el('details', 'tool'));
        details.appendChild(el('summary'));
        details.appendChild(el('pre', 'tool-args'));
        details.appendChild(el('pre', 'tool-result'));
        container.appendChild(details);
      }
      details.dataset.state = tool.state;
      const status = tool.state === 'running' ? 'running…' : tool.state === 'ok' ? 'done' : 'failed';
      /** @type {HTMLElement} */ (details.children[0]).textContent = `Tool ${tool.name} — ${status}`;
      /** @type {HTMLElement} */ (details.children[1]).textContent = tool.arguments ? `arguments: ${tool.arguments}` : '';
      /** @type {HTMLElement} */ (details.children[2]).textContent = tool.result ?? '';
    });
  }

  /** @param {TurnView} turn */
  function drawTurn(turn) {
    empty.hidden = true;
    let section = /** @type {HTMLElement | null} */ (transcript.querySelector(`section.turn[data-turn-id="${turn.id}"]`));
    if (!section) {
      section = createTurn(turn);
    }
    section.dataset.state = turn.state;
    const nearBottom = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 40;

    const reasoning = /** @type {HTMLDetailsElement} */ (section.querySelector('details.reasoning'));
    reasoning.hidden = !turn.reasoning;
    const thinkingNow = turn.state === 'streaming' && !turn.answerText;
    /** @type {HTMLElement} */ (reasoning.querySelector('summary')).textContent = thinkingNow
      ? 'Thinking…'
      : `Thought (${turn.reasoning.length.toLocaleString()} characters)`;
    /** @type {HTMLElement} */ (reasoning.querySelector('.reasoning-body')).innerHTML = turn.reasoningHtml;

    drawTools(/** @type {HTMLElement} */ (section.querySelector('.tools')), turn.tools);

    const commentary = /** @type {HTMLElement} */ (section.querySelector('.commentary'));
    commentary.hidden = !turn.commentary;
    commentary.textContent = turn.commentary;

    const answer = /** @type {HTMLElement} */ (section.querySelector('.answer'));
    answer.innerHTML = turn.answerHtml;
    if (!turn.answerText && (turn.state === 'waiting' || turn.state === 'streaming')) {
      answer.appendChild(el('span', 'pending', turn.reasoning ? '' : 'Waiting for the model…'));
    }

    const warning = /** @type {HTMLElement} */ (section.querySelector('.warning'));
    warning.hidden = !turn.warning;
    warning.textContent = turn.warning ?? '';

    const error = /** @type {HTMLElement} */ (section.querySelector('.error'));
    error.hidden = !turn.error && turn.state !== 'cancelled';
    error.textContent = turn.error ?? (turn.state === 'cancelled' ? 'Stopped.' : '');

    /** @type {HTMLElement} */ (section.querySelector('.meta')).textContent = describeMetrics(turn.metrics);
    if (nearBottom) {
      transcript.scrollTop = transcript.scrollHeight;
    }
  }

  /** @param {string[]} models @param {string | undefined} current */
  function drawModels(models, current) {
    modelSelect.textContent = '';
    const names = current && !models.includes(current) ? [current, ...models] : models;
    if (names.length === 0) {
      const option = el('option', undefined, 'default model');
      option.setAttribute('value', '');
      modelSelect.appendChild(option);
    }
    for (const name of names) {
      const option = /** @type {HTMLOptionElement} */ (el('option', undefined, name));
      option.value = name;
      option.selected = name === current;
      modelSelect.appendChild(option);
    }
  }

  window.addEventListener('message', (event) => {
    /** @type {ToWebview} */
    const message = event.data;
    if (!message || typeof message !== 'object') {
      return;
    }
    switch (message.type) {
      case 'state':
        transcript.textContent = '';
        empty.hidden = message.state.turns.length > 0;
        message.state.turns.forEach(drawTurn);
        drawModels(message.state.models, message.state.model);
        setBusy(message.state.busy);
        break;
      case 'turn':
        drawTurn(message.turn);
        setBusy(message.busy);
        break;
      case 'models':
        drawModels(message.models, message.model);
        break;
      case 'focusInput':
        prompt.focus();
        break;
    }
  });

  function submit() {
    const text = prompt.value.trim();
    if (!text || send.disabled) {
      return;
    }
    post({ type: 'send', text });
    prompt.value = '';
    vscode.setState({ draft: '' });
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    submit();
  });
  prompt.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  prompt.addEventListener('input', () => vscode.setState({ draft: prompt.value }));
  stop.addEventListener('click', () => post({ type: 'stop' }));
  newChat.addEventListener('click', () => post({ type: 'newChat' }));
  modelSelect.addEventListener('change', () => {
    if (modelSelect.value) {
      post({ type: 'selectModel', model: modelSelect.value });
    }
  });

  // Copy / Insert buttons of code blocks (rendered by the extension) via event delegation.
  transcript.addEventListener('click', (event) => {
    const target = /** @type {HTMLElement} */ (event.target);
    const button = target.closest('button.code-button');
    if (!(button instanceof HTMLElement)) {
      return;
    }
    const code = button.closest('.code-block')?.querySelector('code')?.textContent ?? '';
    if (button.dataset.action === 'copy') {
      post({ type: 'copy', code });
      button.textContent = 'Copied';
      setTimeout(() => (button.textContent = 'Copy'), 1500);
    } else if (button.dataset.action === 'insert') {
      post({ type: 'insert', code });
    }
  });

  post({ type: 'ready' });
})();
