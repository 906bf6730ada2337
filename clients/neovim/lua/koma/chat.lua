--- The chat: conversations over `koma.chat` / `koma.explain`, rendered from the
--- `koma/chat/event` notifications into the transcript buffer (koma.transcript).
---
--- Each turn is a "## You" section and a "## Koma" section. Reasoning (thinking/analysis) and
--- tool results stream into closed folds above the answer, so the answer is what the eye finds
--- first and the reasoning is one `zo` away.

local M = {}

local api = vim.api
local T = require('koma.transcript')
local REASONING = { thinking = true, analysis = true }

---@class koma.ChatState
---@field buf integer? the transcript buffer (same as koma.transcript.buf)
---@field chat_id string? conversation the buffer continues
---@field request integer? id of the `koma.chat`/`koma.explain` request in flight
---@field pending boolean a turn is streaming
---@field channel string? channel being streamed
---@field streamed boolean the turn received answer text (or finished) through events
local S = { pending = false, streamed = false }

--- Conversation ids are chosen here (the server starts a conversation for an unknown id), so
--- every event of a turn is recognised from the first one.
local function new_id()
  return ('nvim-%d-%x'):format(vim.fn.getpid(), vim.uv.hrtime())
end
M.state = S

local function plugin_options()
  return (require('koma').config or require('koma.config').resolve({})).plugin
end

local function submit_from_buffer()
  local text = T.user_text()
  if text == '' then
    vim.notify('Koma: write your message under "## You" first', vim.log.levels.WARN)
    return
  end
  M.send(text)
end

--- Show the chat window (creating the buffer on first use) and return it.
---@return integer win
function M.open()
  local win = T.show(plugin_options(), submit_from_buffer)
  S.buf = T.buf
  return win
end

-- Turns -----------------------------------------------------------------------------------

--- Begin a Koma section after the user's text `you`.
local function begin_turn(you)
  T.fold, S.channel, S.streamed, S.pending = false, nil, false, true
  T.set_user_text(vim.split(you, '\n', { plain = true }))
  T.append('\n\n## Koma\n')
  T.scroll()
end

local function end_turn(footer)
  if not S.pending then
    return
  end
  T.close_fold()
  T.fresh_line()
  if footer then
    T.append(footer .. '\n')
  end
  T.append('\n## You\n')
  S.pending, S.request, S.channel = false, nil, nil
  T.scroll()
end

local function metrics_line(m)
  if type(m) ~= 'table' or type(m.totalMs) ~= 'number' then
    return nil
  end
  local parts = {}
  if type(m.tokensPerSecond) == 'number' then
    parts[#parts + 1] = ('%.1f tok/s'):format(m.tokensPerSecond)
  end
  if type(m.ttftMs) == 'number' then
    parts[#parts + 1] = ('first token %d ms'):format(m.ttftMs)
  end
  parts[#parts + 1] = ('%.1f s'):format(m.totalMs / 1000)
  return '_' .. table.concat(parts, ' · ') .. '_'
end

local function start_channel(channel)
  T.close_fold()
  S.channel = channel
  if REASONING[channel] then
    T.open_fold(('💭 Reasoning (%s)'):format(channel), '> ')
  else
    T.fresh_line()
  end
end

--- Write the reply of a finished request when no event streamed it (e.g. a cached answer).
local function finish_with_result(result)
  if type(result) ~= 'table' then
    return
  end
  if type(result.chatId) == 'string' then
    S.chat_id = result.chatId
  end
  if S.pending and not S.streamed then
    for _, ch in ipairs({ 'thinking', 'analysis' }) do
      local text = type(result.channels) == 'table' and result.channels[ch]
      if type(text) == 'string' and text ~= '' then
        start_channel(ch)
        T.append(text, '> ')
      end
    end
    if type(result.text) == 'string' and result.text ~= '' then
      start_channel('final')
      T.append(result.text)
    end
  end
  end_turn(metrics_line(result.metrics))
end

local function show_error(message)
  T.close_fold()
  T.fresh_line()
  T.append('⚠ ' .. tostring(message) .. '\n')
end

--- Handler of `koma/chat/event`.
---@param ev table
function M.on_event(ev, _)
  if type(ev) ~= 'table' then
    return
  end
  if ev.chatId ~= S.chat_id then
    if S.pending or type(ev.chatId) ~= 'string' then
      return -- another conversation; this buffer shows one at a time
    end
    -- A conversation started without this buffer (e.g. another plugin ran koma.explain).
    local win = api.nvim_get_current_win()
    M.open()
    begin_turn('_(started outside this chat)_')
    pcall(api.nvim_set_current_win, win)
    S.chat_id = ev.chatId
  end
  if not T.valid() then
    return
  end
  local t = ev.type
  if t == 'channelStart' then
    start_channel(ev.channel)
  elseif t == 'delta' and type(ev.text) == 'string' then
    if ev.channel and ev.channel ~= S.channel then
      start_channel(ev.channel)
    end
    S.streamed = S.streamed or not REASONING[S.channel]
    T.append(ev.text, T.fold and '> ' or nil)
  elseif t == 'channelEnd' then
    T.close_fold()
    S.channel = nil
  elseif t == 'toolCall' and type(ev.tool) == 'table' then
    T.close_fold()
    T.fresh_line()
    local ok, args = pcall(vim.json.encode, ev.tool.arguments or vim.empty_dict())
    T.append(('🔧 `%s` %s\n'):format(tostring(ev.tool.name), ok and args or ''))
    S.channel = nil
  elseif t == 'toolResult' and type(ev.tool) == 'table' then
    local status = ev.tool.ok == false and 'failed' or 'ok'
    T.close_fold()
    T.open_fold(('↳ `%s` %s'):format(tostring(ev.tool.name), status), '    ')
    T.append(tostring(ev.tool.content or ''), '    ')
    T.close_fold()
    S.channel = nil
  elseif t == 'done' then
    S.streamed = true
    local footer = metrics_line(ev.metrics)
    if ev.cancelled == true then
      footer = '_(cancelled)_' .. (footer and (' ' .. footer) or '')
    end
    end_turn(footer)
  elseif t == 'error' then
    show_error(ev.message)
    vim.notify('Koma: ' .. tostring(ev.message), vim.log.levels.ERROR)
    S.streamed = true
    end_turn(nil)
  end
end

--- Response handler shared by `koma.chat` and `koma.explain`. Failures are fields of the
--- reply (`error`); the matching event normally ended the turn already.
local function on_result(err, result)
  local failure = err and (err.message or 'request failed')
    or type(result) == 'table' and type(result.error) == 'string' and result.error
  if failure then
    if S.pending then
      show_error(failure)
      vim.notify('Koma: ' .. failure, vim.log.levels.ERROR)
    end
    end_turn(nil)
    return
  end
  finish_with_result(result)
  if type(result) == 'table' and type(result.warning) == 'string' then
    T.note('⚠ ' .. result.warning)
  end
end

local function busy()
  if S.pending then
    vim.notify('Koma: still answering — :Koma cancel to stop it', vim.log.levels.WARN)
  end
  return S.pending
end

local function where(uri, range)
  return ('%s, lines %d–%d'):format(
    vim.fn.fnamemodify(vim.uri_to_fname(uri), ':~:.'),
    range.start.line + 1,
    range['end'].line + 1
  )
end

--- Send `message` to the chat (opening it). `opts.uri`/`opts.range` attach a selection.
---@param message string
---@param opts {uri?: string, range?: table, effort?: string}?
function M.send(message, opts)
  opts = opts or {}
  if busy() then
    return
  end
  M.open()
  local you = message
  if opts.range and opts.uri then
    you = ('%s\n\n_(selection: %s)_'):format(message, where(opts.uri, opts.range))
  end
  begin_turn(you)
  S.chat_id = S.chat_id or new_id()
  S.request = require('koma').command('koma.chat', {
    {
      chatId = S.chat_id,
      message = message,
      uri = opts.uri,
      range = opts.range,
      effort = opts.effort,
    },
  }, on_result)
end

--- `:Koma explain` on a range: the server explains the selection as a chat turn. The cursor
--- stays in the code.
---@param uri string
---@param range table LSP range
function M.explain(uri, range)
  if busy() then
    return
  end
  local win = api.nvim_get_current_win()
  M.open()
  begin_turn('Explain ' .. where(uri, range))
  S.chat_id = S.chat_id or new_id()
  S.request = require('koma').command(
    'koma.explain',
    { { uri = uri, range = range, chatId = S.chat_id } },
    on_result
  )
  pcall(api.nvim_set_current_win, win)
end

--- Client-side handler of the `koma.explain` command a resolved code action returns.
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
  require('koma').command('koma.chat.cancel', { { chatId = S.chat_id } }, function() end)
  return true
end

--- Forget the conversation and clear the transcript.
function M.new()
  M.cancel()
  S.chat_id, S.pending, S.channel = nil, false, nil
  if T.valid() then
    T.clear()
  end
end

--- Note something that happened outside the stream (a confirmation, an applied edit).
---@param text string
function M.log(text)
  if not T.valid() then
    return
  end
  local was_fold = T.fold
  T.fold = false
  T.fresh_line()
  T.append(text .. '\n')
  T.fold = was_fold
end

return M
