// imagegate console: the few behaviours a server-rendered page cannot have on its own.
// Loaded as a file (the Content-Security-Policy allows no inline script).
(function () {
  "use strict";

  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  // ---- dialogs and copy buttons ----------------------------------------------------
  function setUpDialogs() {
    document.querySelectorAll("[data-replace-dialog]").forEach((button) => {
      button.addEventListener("click", (event) => {
        const dialog = document.getElementById(button.dataset.replaceDialog);
        if (!dialog || !dialog.showModal) return; // no dialog support: the server asks instead
        event.preventDefault();
        dialog.showModal();
        const select = dialog.querySelector("select");
        if (select) select.focus();
      });
    });
    document.querySelectorAll("dialog[data-open]").forEach((dialog) => {
      if (dialog.showModal) {
        dialog.close();
        dialog.showModal();
      }
    });
    document.querySelectorAll("[data-close-dialog]").forEach((button) => {
      button.addEventListener("click", () => button.closest("dialog").close());
    });
    document.querySelectorAll("[data-copy]").forEach((button) => {
      button.addEventListener("click", async () => {
        const input = document.getElementById(button.dataset.copy);
        input.select();
        try {
          await navigator.clipboard.writeText(input.value);
        } catch (error) {
          document.execCommand("copy");
        }
        button.textContent = "Copied";
      });
    });
  }

  // ---- the image generator ---------------------------------------------------------
  async function api(method, url, body, extraHeaders) {
    const headers = Object.assign({ "X-CSRF-Token": csrf() }, extraHeaders || {});
    const init = { method, headers, credentials: "same-origin" };
    if (body instanceof FormData) {
      init.body = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    let payload = null;
    try {
      payload = await response.json();
    } catch (error) {
      payload = null;
    }
    if (response.status === 401) {
      window.location.assign("/sign-in?ended=1&next=" + encodeURIComponent(location.pathname));
    }
    if (!response.ok) {
      const message = payload && payload.error ? payload.error.message : response.statusText;
      const error = new Error(message || "The request failed (" + response.status + ").");
      error.payload = payload;
      throw error;
    }
    return payload;
  }

  function option(value, label, selected) {
    const element = document.createElement("option");
    element.value = value;
    element.textContent = label;
    element.selected = Boolean(selected);
    return element;
  }

  function setUpGenerator() {
    const dataElement = document.getElementById("generator-data");
    if (!dataElement) return;
    const data = JSON.parse(dataElement.textContent);
    const byId = Object.fromEntries(data.models.map((m) => [m.id, m]));
    const form = document.getElementById("generate-form");
    const $ = (id) => document.getElementById(id);
    const modelSelect = $("model");
    const sizeSelect = $("size");
    const qualitySelect = $("quality");
    const countInput = $("n");
    const estimate = $("estimate");
    const formError = $("form-error");
    const references = []; // {id, name, url}
    let estimateTimer = null;
    let estimateSeq = 0;

    const current = () => byId[modelSelect.value];

    function showError(message) {
      formError.textContent = message;
      formError.hidden = !message;
    }

    function fillOptions(model) {
      const allowed = model.allowedParams;
      sizeSelect.replaceChildren();
      const kind = model.size_kind === "aspect_ratio" || !(allowed.supported_sizes || []).length
        ? "aspect_ratio" : "size";
      const sizes = (kind === "size" ? allowed.supported_sizes : allowed.aspect_ratios) || [];
      sizeSelect.dataset.kind = kind;
      $("size-field").querySelector("label").textContent =
        sizeSelect.dataset.kind === "size" ? "Size" : "Aspect ratio";
      const preferred = sizes.includes("1024x1024") ? "1024x1024" : sizes.includes("1:1") ? "1:1" : sizes[0];
      sizes.filter((s) => s !== "auto").forEach((s) => sizeSelect.append(option(s, s.replace("x", "×"), s === preferred)));
      $("size-field").hidden = sizes.length === 0;
      qualitySelect.replaceChildren();
      model.quality.forEach((q) => qualitySelect.append(option(q, q, q === model.quality_default)));
      $("quality-field").hidden = model.quality.length === 0;
      countInput.max = allowed.max_images || 1;
      if (Number(countInput.value) > Number(countInput.max)) countInput.value = countInput.max;
      $("references").hidden = !model.reference_images;
      renderReferences();
    }

    function body() {
      const model = current();
      const request = { model: model.id, prompt: $("prompt").value, n: Number(countInput.value) || 1 };
      if (!$("size-field").hidden && sizeSelect.value) request[sizeSelect.dataset.kind] = sizeSelect.value;
      if (!$("quality-field").hidden && qualitySelect.value) request.quality = qualitySelect.value;
      if (model.reference_images && references.length) request.reference_files = references.map((r) => r.id);
      return request;
    }

    async function updateEstimate() {
      const seq = ++estimateSeq;
      const request = body();
      if (!request.prompt.trim()) request.prompt = "estimate";
      try {
        const result = await api("POST", "/v1/images/generations?dry_run=true", request);
        if (seq !== estimateSeq) return;
        const eur = result.estimated_cost_eur !== undefined ? " (€" + result.estimated_cost_eur + ")" : "";
        estimate.textContent = "Estimated cost: " + result.estimated_cost + " credits" + eur +
          " for " + result.n + " image" + (result.n === 1 ? "" : "s") + " of " + result.width + "×" + result.height;
        estimate.classList.remove("error-text");
      } catch (error) {
        if (seq !== estimateSeq) return;
        estimate.textContent = "Estimated cost: " + error.message;
        estimate.classList.add("error-text");
      }
    }

    function scheduleEstimate() {
      clearTimeout(estimateTimer);
      estimateTimer = setTimeout(updateEstimate, 250);
    }

    function renderReferences() {
      const list = $("reference-list");
      list.replaceChildren();
      references.forEach((ref, index) => {
        const item = document.createElement("li");
        const img = document.createElement("img");
        img.src = ref.url;
        img.alt = "Reference " + (index + 1) + ": " + ref.name;
        img.width = 48;
        img.height = 48;
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "link";
        remove.textContent = "Remove";
        remove.setAttribute("aria-label", "Remove reference " + ref.name);
        remove.addEventListener("click", () => {
          references.splice(index, 1);
          renderReferences();
          scheduleEstimate();
        });
        item.append(img, document.createTextNode(" " + ref.name + " "), remove);
        list.append(item);
      });
    }

    async function addFiles(files) {
      const model = current();
      const max = model.allowedParams.max_reference_images || 16;
      for (const file of files) {
        if (references.length >= max) {
          showError("This model takes at most " + max + " reference image" + (max === 1 ? "" : "s") + ".");
          break;
        }
        const upload = new FormData();
        upload.append("file", file);
        upload.append("purpose", "reference");
        try {
          const stored = await api("POST", "/v1/files", upload);
          references.push({ id: stored.id, name: file.name, url: URL.createObjectURL(file) });
          showError("");
        } catch (error) {
          showError(error.message);
        }
      }
      renderReferences();
      scheduleEstimate();
    }

    function useAsReference(output) {
      let model = current();
      if (!model.reference_images) {
        const editor = data.models.find((m) => m.reference_images);
        if (!editor) {
          showError("No enabled model takes reference images.");
          return;
        }
        modelSelect.value = editor.id;
        modelSelect.dispatchEvent(new Event("change"));
        model = editor;
      }
      references.splice(0, references.length, { id: output.file_id, name: "result", url: output.url });
      renderReferences();
      $("prompt").focus();
      scheduleEstimate();
    }

    async function refreshBalance() {
      try {
        const credits = await api("GET", "/v1/credits?limit=1");
        $("balance").textContent = credits.available;
      } catch (error) {
        /* the balance stays as it was */
      }
    }

    function resultItem(output, index) {
      const item = document.createElement("li");
      item.className = "result";
      const img = document.createElement("img");
      img.src = output.url;
      img.alt = "Generated image " + (index + 1);
      img.width = output.width || 512;
      img.height = output.height || 512;
      const actions = document.createElement("div");
      actions.className = "actions";
      const download = document.createElement("a");
      download.href = output.url;
      download.download = output.file_id;
      download.textContent = "Download";
      download.className = "button";
      const keep = document.createElement("button");
      keep.type = "button";
      keep.textContent = "Keep in Files";
      keep.addEventListener("click", async () => {
        try {
          await api("POST", "/v1/files", { file_id: output.file_id, purpose: "user_data" });
          keep.textContent = "Kept in Files";
          keep.disabled = true;
        } catch (error) {
          showError(error.message);
        }
      });
      const edit = document.createElement("button");
      edit.type = "button";
      edit.textContent = "Edit";
      edit.addEventListener("click", () => useAsReference(output));
      actions.append(download, keep, edit);
      if (data.upscale_model) {
        const upscale = document.createElement("button");
        upscale.type = "button";
        upscale.textContent = "Upscale";
        upscale.addEventListener("click", () => run(
          "/v1/images/upscale",
          { model: data.upscale_model, image: output.file_id },
        ));
        actions.append(upscale);
      }
      item.append(img, actions);
      return item;
    }

    async function poll(jobId) {
      const text = $("progress-text");
      for (;;) {
        const job = await api("GET", "/v1/jobs/" + encodeURIComponent(jobId));
        text.textContent = job.status === "queued" ? "Waiting for a worker…" : job.status === "running" ? "Generating…" : job.status;
        if (["succeeded", "failed", "canceled", "expired"].includes(job.status)) return job;
        await new Promise((resolve) => setTimeout(resolve, 600));
      }
    }

    async function run(url, request) {
      showError("");
      const button = $("generate-button");
      button.disabled = true;
      $("progress").hidden = false;
      $("progress-text").textContent = "Submitting…";
      try {
        const key = (crypto.randomUUID && crypto.randomUUID()) || String(Date.now()) + Math.random();
        const submitted = await api("POST", url, request, { Prefer: "respond-async", "Idempotency-Key": key });
        if (submitted.model_fallback) {
          const notice = document.createElement("p");
          notice.className = "notice";
          notice.setAttribute("role", "status");
          notice.textContent = submitted.model_fallback.message;
          form.prepend(notice);
        }
        const job = await poll(submitted.job_id || submitted.id);
        if (job.status !== "succeeded") {
          showError((job.error && job.error.message) || "The generation " + job.status + ".");
          return;
        }
        const results = $("results");
        results.replaceChildren(...job.outputs.map(resultItem));
      } catch (error) {
        showError(error.message);
      } finally {
        button.disabled = false;
        $("progress").hidden = true;
        refreshBalance();
        document.body.dispatchEvent(new Event("refresh-history"));
      }
    }

    modelSelect.addEventListener("change", () => {
      fillOptions(current());
      scheduleEstimate();
      api("PUT", "/v1/me/selected-model", { model: modelSelect.value }).catch((error) => showError(error.message));
    });
    [sizeSelect, qualitySelect, countInput].forEach((el) => el.addEventListener("change", scheduleEstimate));
    $("prompt").addEventListener("input", scheduleEstimate);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!$("prompt").value.trim()) {
        showError("Write a prompt first.");
        $("prompt").focus();
        return;
      }
      run("/v1/images/generations", body());
    });

    const dropzone = $("dropzone");
    const input = $("reference-input");
    input.addEventListener("change", () => addFiles(Array.from(input.files)));
    dropzone.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        input.click();
      }
    });
    dropzone.addEventListener("dragover", (event) => {
      event.preventDefault();
      dropzone.classList.add("over");
    });
    dropzone.addEventListener("dragleave", () => dropzone.classList.remove("over"));
    dropzone.addEventListener("drop", (event) => {
      event.preventDefault();
      dropzone.classList.remove("over");
      addFiles(Array.from(event.dataTransfer.files));
    });

    if (data.switched && current()) {
      api("PUT", "/v1/me/selected-model", { model: modelSelect.value }).catch(() => {});
    }
    if (current()) {
      fillOptions(current());
      updateEstimate();
    } else {
      showError("No model is enabled for you. Ask a workspace admin.");
      $("generate-button").disabled = true;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    setUpDialogs();
    setUpGenerator();
  });
})();
