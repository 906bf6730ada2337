--- Ghost text. On Neovim 0.12 this is `vim.lsp.inline_completion` (the "native" backend);
--- on 0.11 (or with `inline_backend = "extmark"`) Koma renders the server's
--- `textDocument/inlineCompletion` items itself: one namespace, one reused extmark,
--- `virt_text_pos = "inline"` for the first line and `virt_lines` for the rest.
--- The server debounces adaptively and answers superseded requests with an empty list, so the
--- client only needs a short coalescing delay and `$/cancelRequest` for stale requests.

local M = {}

local ns = vim.api.nvim_create_namespace('koma.ghost_text')
M.namespace = ns

vim.api.nvim_set_hl(0, 'KomaGhostText', { link = 'Comment', default = true })

---@class koma.GhostState
---@field client_id integer
---@field items table[] InlineCompletionItem list of the last answer
---@field index integer shown item
---@field extmark integer? the one extmark reused for every suggestion
---@field request integer? id of the request in flight
---@field timer uv.uv_timer_t?
---@field tick integer changedtick the items belong to
---@field augroup integer

---@type table<integer, koma.GhostState>
local state = {}

local function cfg()
  local c = require('koma').config
  return c or require('koma.config').resolve({})
end

--- Which renderer is in use: "native" (vim.lsp.inline_completion) or "extmark".
---@return "native"|"extmark"
function M.backend()
  local choice = cfg().plugin.inline_backend
  if choice == 'extmark' or not vim.lsp.inline_completion then
    return 'extmark'
  end
  return 'native'
end

local function native_active(bufnr)
  return M.backend() == 'native'
    and vim.lsp.inline_completion.is_enabled({ bufnr = bufnr })
end

--- Buffer-local insert-mode keys; a key with nothing to do types itself.
local function set_keymaps(bufnr)
  local keys = cfg().plugin.keymaps
  local function map(lhs, fn, desc)
    if not lhs then
      return
    end
    vim.keymap.set('i', lhs, function()
      if fn() then
        return ''
      end
      return vim.keycode(lhs)
    end, { buffer = bufnr, expr = true, replace_keycodes = false, desc = desc })
  end
  map(keys.accept, M.accept, 'Koma: accept suggestion')
  map(keys.next, function()
    return M.cycle(1)
  end, 'Koma: next suggestion')
  map(keys.prev, function()
    return M.cycle(-1)
  end, 'Koma: previous suggestion')
  map(keys.dismiss, M.dismiss, 'Koma: dismiss suggestion')
end

-- Extmark renderer ------------------------------------------------------------------------

local function clear(bufnr)
  local s = state[bufnr]
  if s and s.extmark and vim.api.nvim_buf_is_valid(bufnr) then
    pcall(vim.api.nvim_buf_del_extmark, bufnr, ns, s.extmark)
  end
  if s then
    s.extmark, s.items = nil, {}
  end
end

local function cancel(bufnr)
  local s = state[bufnr]
  local client = s and vim.lsp.get_client_by_id(s.client_id)
  if s and s.request and client then
    client:cancel_request(s.request)
  end
  if s then
    s.request = nil
  end
end

--- Byte column of an LSP position on its line.
local function byte_col(bufnr, pos, encoding)
  local line = vim.api.nvim_buf_get_lines(bufnr, pos.line, pos.line + 1, false)[1] or ''
  local ok, col = pcall(vim.str_byteindex, line, encoding, pos.character, false)
  return ok and col or #line
end

local function item_range(bufnr, item, encoding)
  local cursor = vim.api.nvim_win_get_cursor(0)
  if not item.range then
    return cursor[1] - 1, cursor[2], cursor[1] - 1, cursor[2]
  end
  local r = item.range
  return r.start.line,
    byte_col(bufnr, r.start, encoding),
    r['end'].line,
    byte_col(bufnr, r['end'], encoding)
end

local function item_text(item)
  local text = item.insertText
  if type(text) == 'table' then
    text = text.value or ''
  end
  return text or ''
end

local function render(bufnr)
  local s = state[bufnr]
  local item = s and s.items[s.index]
  local client = s and vim.lsp.get_client_by_id(s.client_id)
  if not item or not client or item_text(item) == '' then
    clear(bufnr)
    return
  end
  local srow, scol, erow, ecol = item_range(bufnr, item, client.offset_encoding)
  local lines = vim.split(item_text(item), '\n', { plain = true })
  local first = lines[1]
  if erow == srow and ecol > scol then
    -- The suggestion replaces text after the cursor (auto-closed brackets): show only the
    -- part that is not already on screen.
    local replaced = vim.api.nvim_buf_get_text(bufnr, srow, scol, erow, ecol, {})[1]
    if #lines == 1 and first:sub(-#replaced) == replaced then
      first = first:sub(1, #first - #replaced)
    end
  end
  local virt_lines = {}
  for i = 2, #lines do
    virt_lines[#virt_lines + 1] = { { lines[i], 'KomaGhostText' } }
  end
  local hint = #s.items > 1 and (' (%d/%d)'):format(s.index, #s.items) or nil
  local virt_text = { { first, 'KomaGhostText' } }
  if hint then
    table.insert(#virt_lines > 0 and virt_lines[#virt_lines] or virt_text, { hint, 'NonText' })
  end
  s.extmark = vim.api.nvim_buf_set_extmark(bufnr, ns, srow, scol, {
    id = s.extmark,
    virt_text = virt_text,
    virt_text_pos = 'inline',
    virt_lines = #virt_lines > 0 and virt_lines or nil,
    hl_mode = 'combine',
  })
end

local function request(bufnr)
  local s = state[bufnr]
  local client = s and vim.lsp.get_client_by_id(s.client_id)
  if not client or vim.api.nvim_get_current_buf() ~= bufnr then
    return
  end
  cancel(bufnr)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = 2 } -- Automatic
  local tick = vim.api.nvim_buf_get_changedtick(bufnr)
  local cursor = vim.api.nvim_win_get_cursor(0)
  local ok, id = client:request('textDocument/inlineCompletion', params, function(err, result)
    if s.request == id then
      s.request = nil
    end
    local now = vim.api.nvim_win_get_cursor(0)
    if err or not result or vim.api.nvim_buf_get_changedtick(bufnr) ~= tick
      or now[1] ~= cursor[1] or now[2] ~= cursor[2] or not vim.fn.mode():match('^i')
    then
      return
    end
    s.items, s.index, s.tick = result.items or result, 1, tick
    render(bufnr)
  end, bufnr)
  s.request = ok and id or nil
end

local function schedule_request(bufnr)
  local s = state[bufnr]
  clear(bufnr)
  if not s.timer then
    s.timer = assert(vim.uv.new_timer())
  end
  s.timer:stop()
  s.timer:start(
    30,
    0,
    vim.schedule_wrap(function()
      if state[bufnr] and vim.api.nvim_buf_is_valid(bufnr) then
        request(bufnr)
      end
    end)
  )
end

local function attach_extmark(bufnr, client)
  local augroup = vim.api.nvim_create_augroup('koma.ghost.' .. bufnr, { clear = true })
  local old = state[bufnr]
  state[bufnr] = {
    client_id = client.id,
    items = {},
    index = 1,
    tick = 0,
    augroup = augroup,
    timer = old and old.timer,
  }
  -- Typing and moving the cursor both make the shown suggestion stale; the timer coalesces.
  vim.api.nvim_create_autocmd({ 'TextChangedI', 'CursorMovedI', 'InsertEnter' }, {
    group = augroup,
    buffer = bufnr,
    callback = function()
      schedule_request(bufnr)
    end,
  })
  vim.api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = augroup,
    buffer = bufnr,
    callback = function()
      cancel(bufnr)
      clear(bufnr)
    end,
  })
end

-- Public API ------------------------------------------------------------------------------

--- Called on LspAttach of the Koma client.
---@param bufnr integer
---@param client vim.lsp.Client
function M.attach(bufnr, client)
  local completion = cfg().server.completion
  if type(completion) == 'table' and completion.enabled == false then
    return
  end
  set_keymaps(bufnr)
  -- Yanked text is context the server may show the model (protocol.md: koma/contextChunk).
  vim.api.nvim_create_autocmd('TextYankPost', {
    group = vim.api.nvim_create_augroup('koma.yank.' .. bufnr, { clear = true }),
    buffer = bufnr,
    callback = function()
      local text = table.concat(vim.v.event.regcontents or {}, '\n')
      if text:match('%S') and not client:is_stopped() then
        client:notify('koma/contextChunk', { uri = vim.uri_from_bufnr(bufnr), text = text:sub(1, 4000) })
      end
    end,
  })
  if M.backend() == 'native' then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
  else
    attach_extmark(bufnr, client)
  end
end

---@param bufnr integer
function M.detach(bufnr)
  local s = state[bufnr]
  if not s then
    return
  end
  cancel(bufnr)
  clear(bufnr)
  if s.timer then
    s.timer:stop()
    s.timer:close()
  end
  pcall(vim.api.nvim_del_augroup_by_id, s.augroup)
  state[bufnr] = nil
end

--- Accept the shown suggestion into the buffer. Returns false when nothing is shown, so a
--- mapping can fall back to the key's usual meaning.
---@return boolean
function M.accept()
  local bufnr = vim.api.nvim_get_current_buf()
  if native_active(bufnr) then
    return vim.lsp.inline_completion.get({ bufnr = bufnr })
  end
  local s = state[bufnr]
  local item = s and s.extmark and s.items[s.index]
  local client = s and vim.lsp.get_client_by_id(s.client_id)
  if not item or not client then
    return false
  end
  local srow, scol, erow, ecol = item_range(bufnr, item, client.offset_encoding)
  local lines = vim.split(item_text(item), '\n', { plain = true })
  clear(bufnr)
  -- Mappings run under textlock; edit the buffer right after.
  vim.schedule(function()
    vim.api.nvim_buf_set_text(bufnr, srow, scol, erow, ecol, lines)
    local row = srow + #lines
    local col = (#lines == 1 and scol or 0) + #lines[#lines]
    pcall(vim.api.nvim_win_set_cursor, 0, { row, col })
  end)
  return true
end

--- Show the next (+1) or previous (-1) suggestion.
---@param step integer
---@return boolean
function M.cycle(step)
  local bufnr = vim.api.nvim_get_current_buf()
  if native_active(bufnr) then
    if not M.visible(bufnr) then
      return false
    end
    vim.lsp.inline_completion.select({ bufnr = bufnr, count = step })
    return true
  end
  local s = state[bufnr]
  if not s or #s.items < 2 then
    return false
  end
  s.index = (s.index - 1 + step) % #s.items + 1
  render(bufnr)
  return true
end

--- Hide the suggestion until the next change.
---@return boolean
function M.dismiss()
  local bufnr = vim.api.nvim_get_current_buf()
  if native_active(bufnr) then
    if not M.visible(bufnr) then
      return false
    end
    -- Re-enabling drops the current item; typing asks again.
    vim.lsp.inline_completion.enable(false, { bufnr = bufnr })
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
    return true
  end
  local s = state[bufnr]
  if not s or not s.extmark then
    return false
  end
  cancel(bufnr)
  clear(bufnr)
  return true
end

--- The ghost text currently shown in `bufnr` (first line plus extra lines), or nil.
---@param bufnr integer?
---@return string?
function M.visible(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local namespaces = { ns }
  local native = vim.api.nvim_get_namespaces()['nvim.lsp.inline_completion']
  if native then
    namespaces[#namespaces + 1] = native
  end
  for _, n in ipairs(namespaces) do
    for _, mark in ipairs(vim.api.nvim_buf_get_extmarks(bufnr, n, 0, -1, { details = true })) do
      local d = mark[4]
      local parts = {}
      for _, chunk in ipairs(d.virt_text or {}) do
        parts[#parts + 1] = chunk[1]
      end
      for _, line in ipairs(d.virt_lines or {}) do
        local text = {}
        for _, chunk in ipairs(line) do
          text[#text + 1] = chunk[1]
        end
        parts[#parts + 1] = '\n' .. table.concat(text)
      end
      if #parts > 0 then
        return table.concat(parts)
      end
    end
  end
  return nil
end

--- Turn ghost text on or off for every buffer (server-side completion stays configured).
function M.toggle()
  if M.backend() == 'native' then
    local on = not vim.lsp.inline_completion.is_enabled({ bufnr = 0 })
    for _, client in ipairs(vim.lsp.get_clients({ name = 'koma' })) do
      for bufnr in pairs(client.attached_buffers) do
        vim.lsp.inline_completion.enable(on, { bufnr = bufnr })
      end
    end
    return on
  end
  M.disabled = not M.disabled
  for bufnr, s in pairs(state) do
    if M.disabled then
      cancel(bufnr)
      clear(bufnr)
      vim.api.nvim_clear_autocmds({ group = s.augroup })
    else
      local client = vim.lsp.get_client_by_id(s.client_id)
      if client then
        attach_extmark(bufnr, client)
      end
    end
  end
  return not M.disabled
end

return M
