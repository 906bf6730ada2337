--- The chat buffer: a markdown transcript fed by `koma/chat/event` notifications.
---
--- Each turn is a "## You" section and a "## Koma" section. Reasoning (thinking/analysis) and
--- tool results stream into closed folds above the answer, so the answer is what the eye finds
--- first and the reasoning is one `zo` away. Fold membership is stored as extmarks, so it
--- follows the text when the user edits the transcript.

local M = {}

local api = vim.api
local fold_ns = api.nvim_create_namespace('koma.chat.fold')
local head_ns = api.nvim_create_namespace('koma.chat.fold_head')
local REASONING = { thinking = true, analysis = true }

---@class koma.ChatState
---@field buf integer?
---@field chat_id string? conversation the buffer continues
---@field client_id integer?
---@field request integer? id of the `koma.chat`/`koma.explain` request in flight
---@field pending boolean a turn is streaming
---@field adopt boolean the next unknown chatId belongs to this buffer (a new conversation)
---@field channel string? channel being streamed
---@field fold boolean the text being appended belongs to a fold
---@field streamed boolean the turn received any final/commentary text
local S = { pending = false, adopt = false, fold = false, streamed = false }
M.state = S

-- Buffer plumbing -------------------------------------------------------------------------

local function valid()
  return S.buf and api.nvim_buf_is_valid(S.buf)
end

local function line_count()
  return api.nvim_buf_line_count(S.buf)
end

--- Windows showing the chat whose cursor sits on the last line keep following the stream.
local function followers()
  local out = {}
  for _, win in ipairs(vim.fn.win_findbuf(S.buf)) do
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

local function mark_fold(row)
  api.nvim_buf_set_extmark(S.buf, fold_ns, row, 0, {})
end

--- Append `text` to the end of the transcript; a "\n" starts a new line. Lines created while
--- `S.fold` is set join the current fold and get `prefix`.
local function append(text, prefix)
  if not valid() or text == '' then
    return
  end
  local wins = followers()
  local pieces = vim.split(text, '\n', { plain = true })
  local last = line_count() - 1
  local current = api.nvim_buf_get_lines(S.buf, last, last + 1, false)[1]
  local new = { current .. pieces[1] }
  for i = 2, #pieces do
    new[#new + 1] = (prefix or '') .. pieces[i]
  end
  api.nvim_buf_set_lines(S.buf, last, last + 1, false, new)
  if S.fold then
    for row = last + 1, last + #new - 1 do
      mark_fold(row)
    end
  end
  follow(wins)
end

--- Make sure the next text starts on an empty line.
local function fresh_line()
  local last = api.nvim_buf_get_lines(S.buf, -2, -1, false)[1]
  if last ~= '' then
    S.fold = false
    append('\n')
  end
end

--- Start a closed fold whose first (visible) line is `title`.
local function open_fold(title, prefix)
  fresh_line()
  S.fold = false
  append(title)
  local row = line_count() - 1
  api.nvim_buf_set_extmark(S.buf, head_ns, row, 0, {})
  mark_fold(row)
  S.fold = true
  append('\n' .. prefix, prefix)
end

local function close_fold()
  if S.fold then
    S.fold = false
    append('\n')
  end
end

local function submit_from_buffer()
  local lines = api.nvim_buf_get_lines(S.buf, 0, -1, false)
  local start
  for i = #lines, 1, -1 do
    if lines[i]:match('^## You') then
      start = i
      break
    end
  end
  local text = vim.trim(table.concat(lines, '\n', (start or 0) + 1))
  if text == '' then
    vim.notify('Koma: write your message under "## You" first', vim.log.levels.WARN)
    return
  end
  M.send(text, { typed = true })
end

local function create_buffer()
  S.buf = api.nvim_create_buf(false, true)
  api.nvim_buf_set_name(S.buf, 'koma://chat')
  vim.bo[S.buf].filetype = 'markdown'
  vim.bo[S.buf].bufhidden = 'hide'
  api.nvim_buf_set_lines(S.buf, 0, -1, false, { '## You', '' })
  local keys = (require('koma').config or require('koma.config').resolve({})).plugin.keymaps
  if keys.chat_submit then
    vim.keymap.set('n', keys.chat_submit, submit_from_buffer, { buffer = S.buf, desc = 'Koma: send' })
  end
  if keys.chat_submit_insert then
    vim.keymap.set('i', keys.chat_submit_insert, function()
      vim.cmd.stopinsert()
      submit_from_buffer()
    end, { buffer = S.buf, desc = 'Koma: send' })
  end
end

-- Folds -----------------------------------------------------------------------------------

--- 'foldexpr' of the chat window: a fold per reasoning block / tool result.
function M.foldexpr()
  local row = vim.v.lnum - 1
  local buf = api.nvim_get_current_buf()
  if #api.nvim_buf_get_extmarks(buf, head_ns, { row, 0 }, { row, 0 }, { limit = 1 }) > 0 then
    return '>1'
  end
  return #api.nvim_buf_get_extmarks(buf, fold_ns, { row, 0 }, { row, 0 }, { limit = 1 }) > 0
      and '1'
    or '0'
end

function M.foldtext()
  local n = vim.v.foldend - vim.v.foldstart
  return ('%s  (%d line%s, zo to open)'):format(
    vim.fn.getline(vim.v.foldstart),
    n,
    n == 1 and '' or 's'
  )
end

--- Show the chat buffer (creating it on first use) and return its window.
---@return integer win
function M.open()
  if not valid() then
    create_buffer()
  end
  local win = vim.fn.win_findbuf(S.buf)[1]
  if win then
    api.nvim_set_current_win(win)
    return win
  end
  local layout = (require('koma').config or require('koma.config').resolve({})).plugin.chat_window
  if layout.layout == 'tab' then
    vim.cmd.tabnew()
  else
    vim.cmd((layout.layout == 'vertical' and 'vertical ' or '') .. 'botright split')
    if layout.size then
      vim.cmd((layout.layout == 'vertical' and 'vertical ' or '') .. 'resize ' .. layout.size)
    end
  end
  local scratch = api.nvim_get_current_buf()
  win = api.nvim_get_current_win()
  api.nvim_win_set_buf(win, S.buf)
  if scratch ~= S.buf and api.nvim_buf_get_name(scratch) == '' and layout.layout == 'tab' then
    pcall(api.nvim_buf_delete, scratch, {})
  end
  local wo = vim.wo[win][0]
  wo.foldmethod = 'expr'
  wo.foldexpr = "v:lua.require'koma.chat'.foldexpr()"
  wo.foldtext = "v:lua.require'koma.chat'.foldtext()"
  wo.foldlevel = 0
  wo.foldenable = true
  wo.wrap = true
  wo.linebreak = true
  api.nvim_win_set_cursor(win, { line_count(), 0 })
  return win
end

-- Turns -----------------------------------------------------------------------------------

--- Begin a Koma section after the user's text `you`.
local function begin_turn(you, title)
  S.fold, S.channel, S.streamed, S.pending = false, nil, false, true
  local lines = api.nvim_buf_get_lines(S.buf, 0, -1, false)
  local you_at
  for i = #lines, 1, -1 do
    if lines[i]:match('^## You') then
      you_at = i
      break
    end
  end
  -- Replace whatever follows the last "## You" with the message actually sent.
  if not you_at then
    append((lines[#lines] == '' and '' or '\n') .. '## You\n')
    you_at = line_count() - 1
  end
  api.nvim_buf_set_lines(S.buf, you_at, -1, false, vim.split(you, '\n', { plain = true }))
  append('\n\n## ' .. title .. '\n')
  follow(vim.fn.win_findbuf(S.buf))
end

local function end_turn(footer)
  if not S.pending then
    return
  end
  close_fold()
  fresh_line()
  if footer then
    append(footer .. '\n')
  end
  append('\n## You\n')
  S.pending, S.request, S.channel = false, nil, nil
  follow(vim.fn.win_findbuf(S.buf))
end

local function metrics_line(m)
  if type(m) ~= 'table' or not m.totalMs then
    return nil
  end
  local parts = {}
  if m.tokensPerSecond then
    parts[#parts + 1] = ('%.1f tok/s'):format(m.tokensPerSecond)
  end
  if m.ttftMs then
    parts[#parts + 1] = ('first token %d ms'):format(m.ttftMs)
  end
  parts[#parts + 1] = ('%.1f s'):format(m.totalMs / 1000)
  return '_' .. table.concat(parts, ' · ') .. '_'
end

local function start_channel(channel)
  close_fold()
  S.channel = channel
  if REASONING[channel] then
    open_fold(('💭 Reasoning (%s)'):format(channel), '> ')
  else
    fresh_line()
  end
end

--- Write the reply of a finished request when no event streamed it (e.g. a cached answer).
local function finish_with_result(result)
  if type(result) ~= 'table' then
    return
  end
  if result.chatId then
    S.chat_id = result.chatId
  end
  if not S.streamed then
    for _, ch in ipairs({ 'thinking', 'analysis' }) do
      local text = result.channels and result.channels[ch]
      if type(text) == 'string' and text ~= '' then
        start_channel(ch)
        append(text, '> ')
      end
    end
    if type(result.text) == 'string' and result.text ~= '' then
      start_channel('final')
      append(result.text)
    end
  end
  end_turn(metrics_line(result.metrics))
end

--- Handler of `koma/chat/event`.
---@param ev table
function M.on_event(ev, _)
  if type(ev) ~= 'table' or not valid() then
    return
  end
  if ev.chatId ~= S.chat_id then
    if S.adopt or not S.pending then
      if not S.pending then
        -- A conversation the server started for us (e.g. an Explain code action).
        M.open()
        begin_turn('_(from a code action)_', 'Koma')
      end
      S.chat_id, S.adopt = ev.chatId, false
    else
      return
    end
  end
  local t = ev.type
  if t == 'channelStart' then
    start_channel(ev.channel)
  elseif t == 'delta' and type(ev.text) == 'string' then
    if ev.channel and ev.channel ~= S.channel then
      start_channel(ev.channel)
    end
    if not REASONING[S.channel] then
      S.streamed = true
    end
    append(ev.text, S.fold and '> ' or nil)
  elseif t == 'channelEnd' then
    close_fold()
    S.channel = nil
  elseif t == 'toolCall' and type(ev.tool) == 'table' then
    close_fold()
    fresh_line()
    local ok, args = pcall(vim.json.encode, ev.tool.arguments or vim.empty_dict())
    append(('🔧 `%s` %s\n'):format(tostring(ev.tool.name), ok and args or ''))
    S.channel = nil
  elseif t == 'toolResult' and type(ev.tool) == 'table' then
    close_fold()
    local status = ev.tool.ok == false and 'failed' or 'ok'
    open_fold(('↳ `%s` %s'):format(tostring(ev.tool.name), status), '    ')
    append(tostring(ev.tool.content or ''), '    ')
    close_fold()
    S.channel = nil
  elseif t == 'done' then
    S.streamed = true
    end_turn(metrics_line(ev.metrics))
  elseif t == 'error' then
    close_fold()
    fresh_line()
    append('⚠ ' .. tostring(ev.message) .. '\n')
    vim.notify('Koma: ' .. tostring(ev.message), vim.log.levels.ERROR)
    S.streamed = true
    end_turn(nil)
  end
end

--- Response handler shared by `koma.chat` and `koma.explain`.
local function on_result(err, result)
  if err then
    if S.pending then
      close_fold()
      fresh_line()
      append('⚠ ' .. (err.message or 'request failed') .. '\n')
    end
    end_turn(nil)
    return
  end
  finish_with_result(result)
end

--- Send `message` to the chat (opening it). `opts.uri`/`opts.range` attach a selection.
---@param message string
---@param opts {uri?: string, range?: table, effort?: string, typed?: boolean}?
function M.send(message, opts)
  opts = opts or {}
  if S.pending then
    vim.notify('Koma: still answering — :Koma cancel to stop it', vim.log.levels.WARN)
    return
  end
  M.open()
  local you = message
  if opts.range then
    you = ('%s\n\n_(selection of %s, lines %d–%d)_'):format(
      message,
      vim.fn.fnamemodify(vim.uri_to_fname(opts.uri), ':~:.'),
      opts.range.start.line + 1,
      opts.range['end'].line + 1
    )
  end
  begin_turn(you, 'Koma')
  S.adopt = S.chat_id == nil
  S.request = require('koma').command('koma.chat', {
    { chatId = S.chat_id, message = message, uri = opts.uri, range = opts.range, effort = opts.effort },
  }, on_result)
end

--- `:Koma explain` on a range: the server explains the selection as a chat turn.
---@param uri string
---@param range table LSP range
function M.explain(uri, range)
  if S.pending then
    vim.notify('Koma: still answering — :Koma cancel to stop it', vim.log.levels.WARN)
    return
  end
  local win = api.nvim_get_current_win()
  M.open()
  begin_turn(
    ('Explain %s, lines %d–%d'):format(
      vim.fn.fnamemodify(vim.uri_to_fname(uri), ':~:.'),
      range.start.line + 1,
      range['end'].line + 1
    ),
    'Koma'
  )
  S.adopt = S.chat_id == nil
  S.request = require('koma').command(
    'koma.explain',
    { { uri = uri, range = range, chatId = S.chat_id } },
    on_result
  )
  -- Keep the cursor in the code the user was working on.
  if api.nvim_win_is_valid(win) then
    api.nvim_set_current_win(win)
  end
end

--- Client-side handler of the `koma.explain` command returned by a resolved code action.
---@param command lsp.Command
---@param ctx table
function M.run_command(command, ctx)
  local args = command.arguments and command.arguments[1] or {}
  if type(args.range) ~= 'table' then
    vim.notify('Koma: the explain command came without a range', vim.log.levels.ERROR)
    return
  end
  M.explain(args.uri or vim.uri_from_bufnr(ctx.bufnr), args.range)
end

--- Stop the streaming answer. Returns true when something was cancelled.
---@return boolean
function M.cancel()
  if not S.pending then
    return false
  end
  if S.chat_id then
    require('koma').command('koma.chat.cancel', { { chatId = S.chat_id } }, function() end)
  else
    local client = require('koma').client()
    if client and S.request then
      client:cancel_request(S.request)
    end
  end
  return true
end

--- Forget the conversation and clear the transcript.
function M.new()
  M.cancel()
  S.chat_id, S.pending, S.adopt, S.fold, S.channel = nil, false, false, false, nil
  if valid() then
    api.nvim_buf_clear_namespace(S.buf, fold_ns, 0, -1)
    api.nvim_buf_clear_namespace(S.buf, head_ns, 0, -1)
    api.nvim_buf_set_lines(S.buf, 0, -1, false, { '## You', '' })
  end
end

--- Note something that happened outside the stream (a confirmation, an applied edit).
---@param text string
function M.log(text)
  if not valid() then
    return
  end
  local was_fold = S.fold
  S.fold = false
  fresh_line()
  append(text .. '\n')
  S.fold = was_fold
end

return M
