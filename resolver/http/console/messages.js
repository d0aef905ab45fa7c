// Every text the console shows, by id, in each language it speaks (i18n.js picks one).
//
// To add a text: add its id here with both "en" and "zh-CN" (tests/integration/test_console.py
// checks every id used in the console exists, in both), then call t("id", params) where it is
// shown. "{name}" is replaced by params.name: numbers are formatted for the language, a
// page element (tx only) is put in as it is. A text whose count changes its English form gives
// { one, other } and is chosen by params.count. Node messages (the REST API's JSON `message`)
// are never in this table: they are shown as the node sends them.
//
// Terms (as China's identifier-resolution industry writes them): identifier/handle 标识,
// prefix 前缀, value 标识值, index 索引, type 类型, template 模板, resolve 解析, register 注册,
// identity 身份, secret 密钥, audit log 审计日志, enterprise 企业, node 节点.

export const MESSAGES = {
  // The page's frame (index.html, app.js)
  "page.title": { en: "idnode console", "zh-CN": "idnode 控制台" },
  "brand.console": { en: "console", "zh-CN": "控制台" },
  "nav.label": { en: "Console sections", "zh-CN": "控制台导航" },
  "nav.dashboard": { en: "Dashboard", "zh-CN": "概览" },
  "nav.handles": { en: "Identifiers", "zh-CN": "标识列表" },
  "nav.new": { en: "New", "zh-CN": "新建标识" },
  "nav.upload": { en: "Upload", "zh-CN": "批量上传" },
  "nav.audit": { en: "Audit log", "zh-CN": "审计日志" },
  "nav.resolve": { en: "Resolve", "zh-CN": "标识解析" },
  "nav.signin": { en: "Sign in", "zh-CN": "登录" },
  "nav.signout": { en: "Sign out", "zh-CN": "退出登录" },
  "nav.language": { en: "Language", "zh-CN": "语言" },
  "page.loading": { en: "Loading…", "zh-CN": "加载中…" },
  "page.footer": {
    en: "A client of this node's REST API ({api}); your secret stays in this tab only.",
    "zh-CN": "本控制台是本节点 REST API（{api}）的客户端；您的密钥只保存在当前标签页中。",
  },
  "page.signedOut": { en: "Signed out: {reason}", "zh-CN": "已退出登录：{reason}" },
  "page.failed": { en: "Something went wrong", "zh-CN": "出错了" },

  // The node's refusals: its message, as sent, with the HTTP status and Handle response code
  "error.http": { en: "{message} (HTTP {status})", "zh-CN": "{message}（HTTP {status}）" },
  "error.httpCode": {
    en: "{message} (HTTP {status}, code {code})",
    "zh-CN": "{message}（HTTP {status}，响应码 {code}）",
  },
  "error.refused": { en: "The node refused: {reason}", "zh-CN": "节点拒绝了请求：{reason}" },

  // Sign-in
  "signin.title": { en: "Sign in", "zh-CN": "登录" },
  "signin.intro": {
    en: "With an identity of this node (index:handle) and its secret.",
    "zh-CN": "使用本节点上的身份（索引:标识）及其密钥登录。",
  },
  "signin.identity": { en: "Identity", "zh-CN": "身份" },
  "signin.secret": { en: "Secret", "zh-CN": "密钥" },
  "signin.submit": { en: "Sign in", "zh-CN": "登录" },
  "signin.unreachable": { en: "The node could not be reached: {detail}", "zh-CN": "无法连接节点：{detail}" },
  "signin.throttled": {
    en: "Too many failed attempts; try again in {seconds} s.",
    "zh-CN": "失败次数过多，请在 {seconds} 秒后重试。",
  },
  "signin.throttledSoon": {
    en: "Too many failed attempts; try again in a few seconds.",
    "zh-CN": "失败次数过多，请稍后重试。",
  },
  "signin.wrong": { en: "Wrong identity or secret: {reason}", "zh-CN": "身份或密钥错误：{reason}" },
  "signin.failed": { en: "Sign-in failed: {reason}", "zh-CN": "登录失败：{reason}" },

  // Dashboard
  "dashboard.title": { en: "Dashboard", "zh-CN": "概览" },
  "dashboard.noPrefix": {
    en: "This identity administers no prefix on this node. Resolving identifiers still works.",
    "zh-CN": "该身份在本节点上没有管理的前缀，但仍可解析标识。",
  },
  "dashboard.count": {
    en: { one: "{shown} identifier", other: "{shown} identifiers" },
    "zh-CN": "{shown} 个标识",
  },
  "dashboard.perDay": {
    en: "Registrations per day, last {days} days",
    "zh-CN": "近 {days} 天每日注册量",
  },
  "dashboard.browse": { en: "Browse", "zh-CN": "浏览标识" },
  "chart.bar": { en: "{day}: {count}", "zh-CN": "{day}：{count} 个" },
  "chart.summary": {
    en: "{total} registrations in the last {days} days, at most {top} a day",
    "zh-CN": "近 {days} 天共注册 {total} 个标识，单日最多 {top} 个",
  },
  "chart.total": { en: "{total} in total", "zh-CN": "共 {total} 个" },
  "chart.max": { en: "max {top}/day", "zh-CN": "单日最多 {top} 个" },

  // Shared by several views
  "action.newIdentifier": { en: "New identifier", "zh-CN": "新建标识" },
  "action.upload": { en: "Upload", "zh-CN": "批量上传" },
  "action.audit": { en: "Audit log", "zh-CN": "审计日志" },
  "field.prefix": { en: "Prefix", "zh-CN": "前缀" },
  "prefix.none": {
    en: "This identity administers no prefix on this node.",
    "zh-CN": "该身份在本节点上没有管理的前缀。",
  },
  "values.index": { en: "Index", "zh-CN": "索引" },
  "values.type": { en: "Type", "zh-CN": "类型" },
  "values.data": { en: "Data", "zh-CN": "数据" },
  "values.ttl": { en: "TTL", "zh-CN": "TTL" },

  // Identifiers: browsing and searching
  "handles.title": { en: "Identifiers", "zh-CN": "标识列表" },
  "handles.search": { en: "Search", "zh-CN": "搜索" },
  "handles.searchHint": { en: "part of a handle", "zh-CN": "标识中的任意部分" },
  "handles.searchButton": { en: "Search", "zh-CN": "搜索" },
  "handles.summary": {
    en: "{from}–{to} of {total} identifiers",
    "zh-CN": "第 {from}–{to} 个，共 {total} 个标识",
  },
  "handles.empty": { en: "No identifiers under this prefix yet.", "zh-CN": "该前缀下还没有标识。" },
  "handles.previous": { en: "← Previous", "zh-CN": "← 上一页" },
  "handles.next": { en: "Next →", "zh-CN": "下一页 →" },
  "handles.found": {
    en: "{count} found for “{query}”.",
    "zh-CN": "找到 {count} 个包含“{query}”的标识。",
  },
  "handles.foundPartial": {
    en: "{count} found for “{query}” (searched the first {read} of {total}).",
    "zh-CN": "找到 {count} 个包含“{query}”的标识（只搜索了前 {read} 个，共 {total} 个）。",
  },
  "handles.openDirectly": { en: "Open {handle} directly", "zh-CN": "直接打开 {handle}" },

  // One identifier
  "handle.edit": { en: "Edit", "zh-CN": "编辑" },
  "handle.delete": { en: "Delete…", "zh-CN": "删除…" },
  "handle.confirmDelete": { en: "Really delete {handle}?", "zh-CN": "确定删除 {handle}？" },
  "handle.deleted": { en: "Deleted {handle}.", "zh-CN": "已删除 {handle}。" },
  "handle.resolvePublic": { en: "Resolve as the public sees it", "zh-CN": "按公开可见的内容解析" },

  // Audit log
  "audit.title": { en: "Audit log", "zh-CN": "审计日志" },
  "audit.since": { en: "Since", "zh-CN": "起始日期" },
  "audit.limit": { en: "At most", "zh-CN": "最多条数" },
  "audit.show": { en: "Show", "zh-CN": "查询" },
  "audit.truncated": {
    en: "The first {limit} entries since {since} (the log is read oldest first): pick a later day to see newer ones.",
    "zh-CN": "{since}以来的前 {limit} 条记录（日志从最早的记录读起）：选择更晚的日期可查看更新的记录。",
  },
  "audit.summary": {
    en: {
      one: "{count} entry since {since} (UTC), newest first.",
      other: "{count} entries since {since} (UTC), newest first.",
    },
    "zh-CN": "{since}（UTC）以来共 {count} 条记录，最新的在前。",
  },
  "audit.time": { en: "Time (UTC)", "zh-CN": "时间（UTC）" },
  "audit.identity": { en: "Identity", "zh-CN": "身份" },
  "audit.address": { en: "Address", "zh-CN": "地址" },
  "audit.operation": { en: "Operation", "zh-CN": "操作" },
  "audit.handle": { en: "Handle", "zh-CN": "标识" },
  "audit.result": { en: "Result", "zh-CN": "结果" },
  "audit.ok": { en: "ok", "zh-CN": "成功" },
  // The node's names of its operations (en: as the node writes them)
  "op.create": { en: "create", "zh-CN": "创建" },
  "op.replace": { en: "replace", "zh-CN": "替换" },
  "op.update": { en: "update", "zh-CN": "更新" },
  "op.put": { en: "put", "zh-CN": "写入" },
  "op.mint": { en: "mint", "zh-CN": "生成标识" },
  "op.delete": { en: "delete", "zh-CN": "删除" },
  "op.add_values": { en: "add_values", "zh-CN": "添加标识值" },
  "op.remove_values": { en: "remove_values", "zh-CN": "删除标识值" },
  "op.unchanged": { en: "unchanged", "zh-CN": "未变更" },
  "op.put_template": { en: "put_template", "zh-CN": "保存模板" },
  "op.delete_template": { en: "delete_template", "zh-CN": "删除模板" },
  "op.update_fields": { en: "update_fields", "zh-CN": "更新字段" },
  "op.import": { en: "import", "zh-CN": "导入" },
  "op.rehash_secret": { en: "rehash_secret", "zh-CN": "更新密钥存储" },
  "op.reseal_secret": { en: "reseal_secret", "zh-CN": "重新加密密钥" },
  "op.batch": { en: "batch_{op}", "zh-CN": "批量{op}" }, // batch_create: 批量创建

  // Resolve
  "resolve.title": { en: "Resolve an identifier", "zh-CN": "标识解析" },
  "resolve.identifier": { en: "Identifier", "zh-CN": "标识" },
  "resolve.mine": { en: "with my credentials", "zh-CN": "使用我的登录身份" },
  "resolve.submit": { en: "Resolve", "zh-CN": "解析" },
  "resolve.answered": { en: "The node answered: {reason}", "zh-CN": "节点返回：{reason}" },

  // The template form (New / Edit)
  "form.newTitle": { en: "New identifier", "zh-CN": "新建标识" },
  "form.editTitle": { en: "Edit {handle}", "zh-CN": "编辑 {handle}" },
  "form.suffix": { en: "Suffix", "zh-CN": "后缀" },
  "form.template": { en: "Template", "zh-CN": "模板" },
  "form.noTemplate": { en: "(no template)", "zh-CN": "（不使用模板）" },
  "form.asStored": { en: "{name} (as stored)", "zh-CN": "{name}（记录中已有）" },
  "form.url": { en: "URL (index 1, where the proxy redirects)", "zh-CN": "URL（索引 1，代理跳转的地址）" },
  "form.create": { en: "Create", "zh-CN": "创建" },
  "form.save": { en: "Save", "zh-CN": "保存" },
  "form.choose": { en: "— choose —", "zh-CN": "— 请选择 —" },
  "form.none": { en: "(none)", "zh-CN": "（无）" },
  "form.hintIndex": { en: "index {index}", "zh-CN": "索引 {index}" },
  "form.hintLength": { en: "{min}–{max} characters", "zh-CN": "{min}–{max} 个字符" },
  "form.required": { en: "required", "zh-CN": "必填" },
  "form.kept": { en: "Kept unchanged: {values}.", "zh-CN": "保持不变的标识值：{values}。" },
  "form.fieldProblem": { en: "{field} {problem}", "zh-CN": "{field}：{problem}" },
  "form.fix": {
    en: { one: "Fix the marked field; nothing was sent.", other: "Fix the {count} marked fields; nothing was sent." },
    "zh-CN": "请修正标出的 {count} 个字段；尚未发送任何内容。",
  },
  "form.created": { en: "Created {handle}.", "zh-CN": "已创建 {handle}。" },
  "form.saved": { en: "Saved {handle}.", "zh-CN": "已保存 {handle}。" },
  // A template field's data type (en: as the template writes it)
  "dataType.string": { en: "string", "zh-CN": "字符串" },
  "dataType.integer": { en: "integer", "zh-CN": "整数" },
  "dataType.number": { en: "number", "zh-CN": "数字" },
  "dataType.date": { en: "date", "zh-CN": "日期" },
  "dataType.datetime": { en: "datetime", "zh-CN": "日期时间" },
  "dataType.url": { en: "url", "zh-CN": "网址" },
  "dataType.enum": { en: "enum", "zh-CN": "枚举" },
  // What is wrong with a field, said before anything is sent
  "check.required": { en: "is required", "zh-CN": "必填" },
  "check.integer": { en: "must be a whole number", "zh-CN": "必须是整数" },
  "check.number": { en: "must be a number", "zh-CN": "必须是数字" },
  "check.date": { en: "must be a date, YYYY-MM-DD", "zh-CN": "必须是日期，格式为 YYYY-MM-DD" },
  "check.datetime": { en: "must be a date and time, ISO 8601", "zh-CN": "必须是 ISO 8601 格式的日期时间" },
  "check.url": { en: "must be an http(s) URL", "zh-CN": "必须是以 http:// 或 https:// 开头的网址" },
  "check.minLength": { en: "needs at least {min} characters", "zh-CN": "至少需要 {min} 个字符" },
  "check.maxLength": {
    en: "is {length} characters long; at most {max} are allowed",
    "zh-CN": "长度为 {length} 个字符，最多 {max} 个",
  },
  "check.enum": { en: "must be one of {choices}", "zh-CN": "必须是以下之一：{choices}" },

  // Upload
  "upload.title": { en: "Upload identifiers", "zh-CN": "批量上传标识" },
  "upload.file": { en: "File", "zh-CN": "文件" },
  "upload.operation": { en: "Operation", "zh-CN": "操作" },
  "upload.perBatch": { en: "Per batch", "zh-CN": "每批条数" },
  "upload.submit": { en: "Upload", "zh-CN": "上传" },
  "upload.nothingSent": { en: "Nothing was sent: {reason}.", "zh-CN": "未发送任何内容：{reason}。" },
  "upload.sending": { en: "Sending batch {n} of {total}…", "zh-CN": "正在发送第 {n} 批，共 {total} 批…" },
  "upload.refused": {
    en: "Batch {n} of {total} was refused: {reason}. {done} records were sent before it.",
    "zh-CN": "第 {n} 批（共 {total} 批）被拒绝：{reason}。在此之前已发送 {done} 条记录。",
  },
  "upload.done": {
    en: "Done: {sent} of {total} batches, {written} records written, {failed} failed.",
    "zh-CN": "完成：已发送 {sent}/{total} 批，写入 {written} 条记录，失败 {failed} 条。",
  },
  "upload.failed": { en: "Failed records", "zh-CN": "失败的记录" },
  "upload.handle": { en: "Handle", "zh-CN": "标识" },
  "upload.code": { en: "Code", "zh-CN": "响应码" },
  "upload.message": { en: "Message", "zh-CN": "消息" },
  "upload.more": { en: "… and {count} more.", "zh-CN": "……另有 {count} 条。" },
  "upload.formats": { en: "File formats", "zh-CN": "文件格式" },
  "upload.csvFormat": {
    en:
      "{csv} (.csv, UTF-8): a header {header}, then one identifier per line; each cell is the value's text at " +
      "that index and type, an empty cell no value. A handle without “/” is put under the chosen prefix.",
    "zh-CN":
      "{csv}（.csv，UTF-8 编码）：第一行为表头 {header}，之后每行一个标识；每个单元格是该索引、该类型的标识值文本，" +
      "空单元格表示没有该值。不含“/”的标识放在所选前缀下。",
  },
  "upload.jsonlName": { en: "JSON lines", "zh-CN": "JSONL" },
  "upload.jsonlFormat": {
    en: "{jsonl} (.jsonl, any other name): one {shape} per line, the values as {put} takes them.",
    "zh-CN": "{jsonl}（.jsonl 或其他文件名）：每行一个 {shape}，标识值的写法与 {put} 相同。",
  },
  "upload.batches": {
    en:
      "Records go in batches of up to {limit} ({batch}, not atomic): a bad record fails alone and is listed; " +
      "“create” leaves an identical existing record as it is and fails on a different one, “replace” overwrites.",
    "zh-CN":
      "记录按每批最多 {limit} 条提交（{batch}，非原子操作）：有错的记录单独失败并列出；" +
      "“创建”遇到完全相同的已有记录时保持不变，遇到不同的记录则失败；“替换”覆盖已有记录。",
  },
  "upload.op.create": { en: "create", "zh-CN": "创建" },
  "upload.op.replace": { en: "replace", "zh-CN": "替换" },
  // A file the page cannot send
  "file.quote": { en: "a quoted field is not closed", "zh-CN": "有带引号的字段没有闭合" },
  "file.empty": { en: "the file is empty", "zh-CN": "文件为空" },
  "file.firstColumn": {
    en: "the first column of the header must be {handle}",
    "zh-CN": "表头第一列必须是 {handle}",
  },
  "file.column": {
    en: "header column {n} must be index:type, such as {example}, not “{name}”",
    "zh-CN": "表头第 {n} 列必须是“索引:类型”（如 {example}），而不是“{name}”",
  },
  "file.cells": {
    en: "line {n} has {cells} cells, the header {header}",
    "zh-CN": "第 {n} 行有 {cells} 个单元格，而表头有 {header} 个",
  },
  "file.noHandle": { en: "line {n} has no handle", "zh-CN": "第 {n} 行没有标识" },
  "file.notJson": { en: "line {n} is not JSON: {detail}", "zh-CN": "第 {n} 行不是 JSON：{detail}" },
  "file.shape": { en: "line {n} must be {shape}", "zh-CN": "第 {n} 行必须是 {shape}" },
  "file.noRecords": { en: "the file holds no records", "zh-CN": "文件中没有记录" },
};
