--- The chat transcript buffer: a markdown buffer that text is streamed into, with folds.
---
--- Text is only ever appended at the end. Lines written while `T.fold` is set belong to the
--- current fold; fold membership is stored as extmarks (left gravity, so text inserted on an
--- empty marked line does not push the mark down), which keeps folds attached to their text
--- when the user edits the transcript. 'foldexpr' reads those marks; with 'foldlevel' 0 every
--- new fold starts closed.

local T = {}

local api = vim.api
local fold_ns = api.nvim_create_namespace('koma.chat.fold')
local head_ns = api.nvim_create_namespace('koma.chat.fold_head')

---@type integer? the transcript buffer
T.buf = nil
--- Whether appended lines join the current fold.
T.fold = false

function T.valid()
  return T.buf ~= nil and api.nvim_buf_is_valid(T.buf)
end

local function line_count()
  return api.nvim_buf_line_count(T.buf)
end

--- Windows showing the transcript whose cursor sits at the end keep following the stream.
local function followers()
  local out = {}
  for _, win in ipairs(vim.fn.win_findbuf(T.buf)) do
    if api.nvim_win_get_cursor(win)[1] >= line_count() - 1 then
      out[#out + 1] = win
    end
  end
  return out
end

local function follow(wins)
  for _, win in ipairs(wins) do
    if api.nvim_win_is_valid(win) then
      api.nvim_win_set_cursor(win, { line_count(), 0 })
    end
  end
end

--- Move every window showing the transcript to its last line.
function T.scroll()
  follow(vim.fn.win_findbuf(T.buf))
end

local function mark(ns, row)
  api.nvim_buf_set_extmark(T.buf, ns, row, 0, { right_gravity = false })
end

--- Append `text` at the end; each "\n" starts a new line, which gets `prefix`.
---@param text string
---@param prefix string?
function T.append(text, prefix)
  if not T.valid() or text == '' then
    return
  end
  local wins = followers()
  local pieces = vim.split(text, '\n', { plain = true })
  for i = 2, #pieces do
    pieces[i] = (prefix or '') .. pieces[i]
  end
  local last = line_count() - 1
  local col = #api.nvim_buf_get_lines(T.buf, last, last + 1, false)[1]
  -- Insert at the end of the last line so marks on earlier text stay where they are.
  api.nvim_buf_set_text(T.buf, last, col, last, col, pieces)
  if T.fold then
    for row = last + 1, last + #pieces - 1 do
      mark(fold_ns, row)
    end
  end
  follow(wins)
end

--- Make sure the next text starts on an empty line (outside any fold).
function T.fresh_line()
  local last = api.nvim_buf_get_lines(T.buf, -2, -1, false)[1]
  if last ~= '' then
    T.fold = false
    T.append('\n')
  end
end

--- Start a closed fold whose first (visible) line is `title`; its lines get `prefix`.
function T.open_fold(title, prefix)
  T.fresh_line()
  T.fold = false
  T.append(title)
  local row = line_count() - 1
  mark(head_ns, row)
  mark(fold_ns, row)
  T.fold = true
  T.append('\n', prefix)
end

function T.close_fold()
  if T.fold then
    T.fold = false
    T.append('\n')
  end
end

--- Replace everything after the last "## You" heading with `lines` (adding the heading when
--- missing): the message as it was sent.
---@param lines string[]
function T.set_user_text(lines)
  local all = api.nvim_buf_get_lines(T.buf, 0, -1, false)
  local at = T.last_heading(all)
  if not at then
    T.append((all[#all] == '' and '' or '\n') .. '## You\n')
    at = line_count() - 1
  end
  api.nvim_buf_set_lines(T.buf, at, -1, false, lines)
end

--- Index (1-based) of the last "## You" line.
---@param lines string[]
---@return integer?
function T.last_heading(lines)
  for i = #lines, 1, -1 do
    if lines[i]:match('^## You') then
      return i
    end
  end
end

--- The text the user typed under the last "## You".
---@return string
function T.user_text()
  local lines = api.nvim_buf_get_lines(T.buf, 0, -1, false)
  return vim.trim(table.concat(lines, '\n', (T.last_heading(lines) or 0) + 1))
end

--- Put `text` (and a blank line) just above the last "## You" heading: a remark about the
--- answer that arrives after the turn ended.
---@param text string
function T.note(text)
  if not T.valid() then
    return
  end
  local at = T.last_heading(api.nvim_buf_get_lines(T.buf, 0, -1, false))
  local row = at and at - 1 or line_count()
  api.nvim_buf_set_lines(T.buf, row, row, false, { text, '' })
end

--- Empty the transcript.
function T.clear()
  api.nvim_buf_clear_namespace(T.buf, fold_ns, 0, -1)
  api.nvim_buf_clear_namespace(T.buf, head_ns, 0, -1)
  api.nvim_buf_set_lines(T.buf, 0, -1, false, { '## You', '' })
  T.fold = false
end

--- 'foldexpr' of the transcript window: one fold per marked block.
function T.foldexpr()
  local row = vim.v.lnum - 1
  local buf = api.nvim_get_current_buf()
  if #api.nvim_buf_get_extmarks(buf, head_ns, { row, 0 }, { row, 0 }, { limit = 1 }) > 0 then
    return '>1'
  end
  return #api.nvim_buf_get_extmarks(buf, fold_ns, { row, 0 }, { row, 0 }, { limit = 1 }) > 0
      and '1'
    or '0'
end

function T.foldtext()
  local n = vim.v.foldend - vim.v.foldstart
  return ('%s  (%d line%s, zo to open)'):format(
    vim.fn.getline(vim.v.foldstart),
    n,
    n == 1 and '' or 's'
  )
end

--- Create the buffer; `on_submit` runs when the user sends what they typed.
---@param keys koma.Keymaps
---@param on_submit fun()
local function create(keys, on_submit)
  T.buf = api.nvim_create_buf(false, true)
  api.nvim_buf_set_name(T.buf, 'koma://chat')
  vim.bo[T.buf].filetype = 'markdown'
  vim.bo[T.buf].bufhidden = 'hide'
  api.nvim_buf_set_lines(T.buf, 0, -1, false, { '## You', '' })
  if keys.chat_submit then
    vim.keymap.set('n', keys.chat_submit, on_submit, { buffer = T.buf, desc = 'Koma: send' })
  end
  if keys.chat_submit_insert then
    vim.keymap.set('i', keys.chat_submit_insert, function()
      vim.cmd.stopinsert()
      on_submit()
    end, { buffer = T.buf, desc = 'Koma: send' })
  end
end

--- Show the transcript (creating it on first use), focus its window and return it.
---@param plugin koma.PluginOptions
---@param on_submit fun()
---@return integer win
function T.show(plugin, on_submit)
  if not T.valid() then
    create(plugin.keymaps, on_submit)
  end
  local win = vim.fn.win_findbuf(T.buf)[1]
  if win then
    api.nvim_set_current_win(win)
    return win
  end
  local layout = plugin.chat_window
  if layout.layout == 'tab' then
    vim.cmd.tabnew()
  else
    local vertical = layout.layout == 'vertical' and 'vertical ' or ''
    vim.cmd(vertical .. 'botright split')
    if layout.size then
      vim.cmd(vertical .. 'resize ' .. layout.size)
    end
  end
  local scratch = api.nvim_get_current_buf()
  win = api.nvim_get_current_win()
  api.nvim_win_set_buf(win, T.buf)
  if layout.layout == 'tab' and scratch ~= T.buf and api.nvim_buf_get_name(scratch) == '' then
    -- The empty buffer `:tabnew` made.
    pcall(api.nvim_buf_delete, scratch, {})
  end
  local wo = vim.wo[win][0]
  wo.foldmethod = 'expr'
  wo.foldexpr = "v:lua.require'koma.transcript'.foldexpr()"
  wo.foldtext = "v:lua.require'koma.transcript'.foldtext()"
  wo.foldlevel = 0
  wo.foldenable = true
  wo.wrap = true
  wo.linebreak = true
  api.nvim_win_set_cursor(win, { line_count(), 0 })
  return win
end

return T
