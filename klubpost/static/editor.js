// The newsletter editor: blocks, live preview (debounced) and autosave with
// optimistic locking. The page works without it (the form still saves).
(function () {
  "use strict";
  var root = document.getElementById("editor");
  if (!root) return;
  var state = JSON.parse(document.getElementById("editor-state").textContent);
  var data = JSON.parse(document.getElementById("editor-data").textContent);
  var t = data.i18n;
  var editable = root.dataset.editable === "true";
  var version = state.version;
  var blocks = state.blocks || [];
  var PREVIEW_DELAY = 400;
  var SAVE_DELAY = 1500;
  var previewTimer = null;
  var saveTimer = null;
  var previewSeq = 0;
  var dirty = false;
  var saving = false;
  var conflicted = false;

  var $ = function (id) { return document.getElementById(id); };
  var subject = $("subject");
  var preheader = $("preheader");
  var template = $("template");
  var mjmlToggle = $("edit-mjml");
  var mjml = $("custom-mjml");
  var blocksBox = $("blocks");

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), attrs[key]);
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function input(block, key, label, opts) {
    opts = opts || {};
    var id = "b" + Math.random().toString(36).slice(2);
    var tag = opts.multiline ? "textarea" : "input";
    var field = el(tag, { id: id, "data-key": key });
    if (!opts.multiline) field.type = opts.type || "text";
    else field.rows = 5;
    field.value = block[key] || "";
    if (!editable) field.readOnly = true;
    field.addEventListener("input", function () {
      block[key] = field.value;
      changed();
    });
    return el("div", { class: "field" }, [el("label", { for: id, text: label }), field]);
  }

  function eventSelect(block) {
    var id = "b" + Math.random().toString(36).slice(2);
    var select = el("select", { id: id, "data-key": "event_id" }, [
      el("option", { value: "", text: t.choose_event }),
    ]);
    data.events.forEach(function (event) {
      var option = el("option", { value: String(event.id), text: event.label });
      if (block.event_id === event.id) option.selected = true;
      select.appendChild(option);
    });
    select.disabled = !editable;
    select.addEventListener("change", function () {
      block.event_id = select.value ? parseInt(select.value, 10) : null;
      changed();
    });
    return el("div", { class: "field" }, [el("label", { for: id, text: t.event }), select]);
  }

  function linkRows(block) {
    var box = el("div", { class: "link-rows" });
    block.links = block.links || [];
    block.links.forEach(function (link, index) {
      var row = el("div", { class: "link-row" }, [
        input(link, "label", t.label),
        input(link, "url", t.url, { type: "url" }),
        input(link, "tag", t.tag),
      ]);
      if (editable) {
        row.appendChild(el("button", {
          type: "button", class: "link", text: t.remove, "aria-label": t.remove,
          onclick: function () { block.links.splice(index, 1); draw(); changed(); },
        }));
      }
      box.appendChild(row);
    });
    if (editable) {
      box.appendChild(el("button", {
        type: "button", text: t.add_link, "data-add-link": "",
        onclick: function () {
          block.links.push({ label: "", url: "", tag: null, track: true });
          draw(); changed();
        },
      }));
    }
    return box;
  }

  function fieldsFor(block) {
    switch (block.type) {
      case "text":
        return [input(block, "heading", t.heading), input(block, "text", t.body, { multiline: true })];
      case "image":
        return [input(block, "url", t.url, { type: "url" }), input(block, "alt", t.alt),
                input(block, "link", t.image_link, { type: "url" })];
      case "button":
        return [input(block, "label", t.label), input(block, "url", t.url, { type: "url" })];
      case "event":
        return [eventSelect(block)];
      case "links":
        return [input(block, "title", t.title), linkRows(block)];
    }
    return [];
  }

  function move(index, by) {
    var target = index + by;
    if (target < 0 || target >= blocks.length) return;
    var block = blocks.splice(index, 1)[0];
    blocks.splice(target, 0, block);
    draw(); changed();
  }

  function draw() {
    blocksBox.textContent = "";
    if (!blocks.length) blocksBox.appendChild(el("p", { class: "muted", text: t.no_blocks }));
    blocks.forEach(function (block, index) {
      var tools = editable ? el("span", { class: "block-tools" }, [
        el("button", { type: "button", text: "↑", title: t.up, "aria-label": t.up,
                       onclick: function () { move(index, -1); } }),
        el("button", { type: "button", text: "↓", title: t.down, "aria-label": t.down,
                       onclick: function () { move(index, 1); } }),
        el("button", { type: "button", text: "✕", title: t.remove, "aria-label": t.remove,
                       onclick: function () { blocks.splice(index, 1); draw(); changed(); } }),
      ]) : null;
      var legend = el("legend", {}, [el("span", { text: (index + 1) + ". " + t[block.type] }), tools]);
      blocksBox.appendChild(el("fieldset", { class: "block block-" + block.type, "data-type": block.type },
                               [legend].concat(fieldsFor(block))));
    });
    $("blocks-json").value = JSON.stringify(blocks);
  }

  function newBlock(type) {
    switch (type) {
      case "text": return { type: "text", heading: "", text: "" };
      case "image": return { type: "image", url: "", alt: "", link: null };
      case "button": return { type: "button", label: "", url: "" };
      case "event": return { type: "event", event_id: data.events.length ? data.events[0].id : null };
      case "links": return { type: "links", title: "", links: [{ label: "", url: "", tag: null, track: true }] };
    }
  }

  function cleanBlocks() {
    // An event card with no event chosen yet is not sent: the server wants an id.
    return blocks.filter(function (b) { return b.type !== "event" || b.event_id; });
  }

  function draft() {
    return {
      subject: subject.value,
      preheader: preheader.value,
      template: template.value,
      blocks: cleanBlocks(),
      custom_mjml: mjmlToggle.checked ? mjml.value : null,
    };
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": root.dataset.csrf },
      body: JSON.stringify(body),
    }).then(function (response) {
      return response.json().then(function (json) { return { status: response.status, body: json }; });
    });
  }

  // ------------------------------------------------------------ preview

  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(refreshPreview, PREVIEW_DELAY);
  }

  function refreshPreview() {
    var seq = ++previewSeq;
    var body = draft();
    body.subscriber_id = $("preview-as").value || null;
    $("preview-status").textContent = t.rendering;
    post(root.dataset.previewUrl, body).then(function (result) {
      if (seq !== previewSeq) return;  // a newer preview is on its way
      $("preview-status").textContent = "";
      var error = $("preview-error");
      if (result.status !== 200) {
        var e = result.body.error || {};
        error.textContent = (e.line ? t.line + " " + e.line + ": " : "") + (e.message || "");
        error.hidden = false;
        return;  // the last good preview stays, and so does the draft
      }
      error.hidden = true;
      $("preview-desktop").srcdoc = result.body.html;
      $("preview-phone").srcdoc = result.body.html;
      $("preview-text").textContent = result.body.text;
      var list = $("preview-warnings");
      list.textContent = "";
      result.body.warnings.forEach(function (w) { list.appendChild(el("li", { text: w })); });
    }).catch(function () {
      $("preview-status").textContent = t.failed;
    });
  }

  // ------------------------------------------------------------ autosave

  function setStatus(text, state) {
    var status = $("save-status");
    status.textContent = text;
    status.dataset.state = state;  // "dirty", "saving", "saved", "conflict", "error"
  }

  function scheduleSave() {
    if (!editable || conflicted) return;
    clearTimeout(saveTimer);
    saveTimer = setTimeout(save, SAVE_DELAY);
  }

  function save(force) {
    if (saving) { scheduleSave(); return Promise.resolve(); }
    if (conflicted && !force) return Promise.resolve();
    saving = true;
    dirty = false;
    setStatus(t.saving, "saving");
    var body = draft();
    body.version = version;
    return post(root.dataset.autosaveUrl, body).then(function (result) {
      saving = false;
      if (result.status === 200) {
        version = result.body.version;
        $("version").value = version;
        if (dirty) setStatus(t.unsaved, "dirty");  // typed on while saving
        else setStatus(t.saved + " " + new Date().toLocaleTimeString().slice(0, 5), "saved");
      } else if (result.status === 409) {
        showConflict(result.body);
      } else {
        dirty = true;
        setStatus(t.unsaved + ": " + ((result.body.error || {}).message || result.status), "error");
      }
    }).catch(function () {
      saving = false;
      dirty = true;
      setStatus(t.failed, "error");
      scheduleSave();
    });
  }

  function showConflict(body) {
    conflicted = true;
    var theirs = body.current || {};
    $("conflict-text").textContent = body.error.message +
      (theirs.updated_by ? " (" + t.by.replace("{name}", theirs.updated_by) + ")" : "");
    $("conflict-theirs").textContent = JSON.stringify(
      { subject: theirs.subject, preheader: theirs.preheader, blocks: theirs.blocks }, null, 2);
    $("conflict").hidden = false;
    $("conflict").dataset.version = theirs.version;
    setStatus(t.unsaved, "conflict");
  }

  function changed() {
    dirty = true;
    if (editable && !conflicted && !saving) setStatus(t.unsaved, "dirty");
    $("blocks-json").value = JSON.stringify(blocks);
    schedulePreview();
    scheduleSave();
  }

  // ------------------------------------------------------------ wiring

  [subject, preheader, mjml].forEach(function (node) { node.addEventListener("input", changed); });
  template.addEventListener("change", changed);
  $("preview-as").addEventListener("change", refreshPreview);
  document.querySelectorAll("[data-add]").forEach(function (button) {
    button.addEventListener("click", function () {
      blocks.push(newBlock(button.dataset.add));
      draw(); changed();
    });
  });
  mjmlToggle.addEventListener("change", function () {
    if (mjmlToggle.checked) {
      $("mjml-mode").open = true;
      if (!mjml.value.trim()) {
        fetch(root.dataset.sourceUrl + "?template=" + encodeURIComponent(template.value),
              { credentials: "same-origin" })
          .then(function (r) { return r.json(); })
          .then(function (json) { mjml.value = json.source || ""; changed(); });
        return;
      }
    } else if (mjml.value.trim() && !window.confirm(t.discard_mjml)) {
      mjmlToggle.checked = true;
      return;
    } else {
      mjml.value = "";
    }
    changed();
  });
  $("conflict-reload").addEventListener("click", function () { window.location.reload(); });
  $("conflict-overwrite").addEventListener("click", function () {
    version = parseInt($("conflict").dataset.version, 10);
    conflicted = false;
    $("conflict").hidden = true;
    save(true);
  });
  var testForm = $("test-form");
  if (testForm) {
    // The test mail is the saved draft: save first if there is anything unsaved.
    testForm.addEventListener("submit", function (event) {
      if (!dirty || conflicted) return;
      event.preventDefault();
      clearTimeout(saveTimer);
      save().then(function () { if (!conflicted) testForm.submit(); });
    });
  }
  var form = $("draft-form");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    clearTimeout(saveTimer);
    save();
  });
  window.addEventListener("beforeunload", function (event) {
    if (dirty || conflicted) { event.preventDefault(); event.returnValue = ""; }
  });

  draw();
  refreshPreview();
})();
