// The upload page: pick a collection, paste the token, choose or drop photos. Each photo is sent
// in its own request (so each has its own progress bar), one after another; the answer shows a
// preview and a link to copy, or the server's refusal in plain words.
//
// SECURITY: the page runs under a strict Content-Security-Policy: no inline script or style, no
// other hosts. Nothing here sets a style attribute; state is shown with classes, `hidden` and the
// <progress> element's value. The token lives in sessionStorage only (this tab), never in a URL
// or a cookie, and is sent only in the Authorization header.
'use strict';

(function () {
  const TOKEN_KEY = 'botilyx-media.upload-token';
  const COLLECTION_KEY = 'botilyx-media.collection';

  const form = document.getElementById('upload-form');
  const tokenInput = document.getElementById('token');
  const tokenShow = document.getElementById('token-show');
  const tokenForget = document.getElementById('token-forget');
  const fileInput = document.getElementById('files');
  const dropZone = document.getElementById('drop-zone');
  const status = document.getElementById('status');
  const list = document.getElementById('uploads');
  const emptyNote = document.getElementById('uploads-empty');
  const template = document.getElementById('upload-item');

  // Uploads wait here and go one at a time: gentle on a phone's connection.
  const queue = [];
  let busy = false;
  let nextId = 1;

  // ---- Settings kept for this tab ---------------------------------------------------------

  function storageGet(key) {
    try {
      return window.sessionStorage.getItem(key);
    } catch (_) {
      return null; // storage disabled: the page still works, it just forgets
    }
  }

  function storageSet(key, value) {
    try {
      if (value) {
        window.sessionStorage.setItem(key, value);
      } else {
        window.sessionStorage.removeItem(key);
      }
    } catch (_) {
      // storage disabled or full: nothing to do
    }
  }

  function currentToken() {
    // A pasted token often carries a trailing newline or spaces.
    return tokenInput.value.trim();
  }

  function currentCollection() {
    const checked = form.querySelector('input[name="collection"]:checked');
    return checked ? checked.value : 'medications';
  }

  tokenInput.value = storageGet(TOKEN_KEY) || '';
  tokenInput.addEventListener('input', function () {
    storageSet(TOKEN_KEY, currentToken());
  });

  tokenShow.addEventListener('click', function () {
    const show = tokenInput.type === 'password';
    tokenInput.type = show ? 'text' : 'password';
    tokenShow.setAttribute('aria-pressed', String(show));
    tokenShow.textContent = show ? 'Hide' : 'Show';
  });

  tokenForget.addEventListener('click', function () {
    tokenInput.value = '';
    storageSet(TOKEN_KEY, '');
    announce('The token was forgotten.');
    tokenInput.focus();
  });

  const savedCollection = storageGet(COLLECTION_KEY);
  form.querySelectorAll('input[name="collection"]').forEach(function (radio) {
    if (radio.value === savedCollection) {
      radio.checked = true;
    }
    radio.addEventListener('change', function () {
      storageSet(COLLECTION_KEY, currentCollection());
    });
  });

  // NOTE: the form is never submitted (Enter in the token field would do it); uploads start
  // from the file picker or a drop.
  form.addEventListener('submit', function (event) {
    event.preventDefault();
  });

  // ---- Choosing files -------------------------------------------------------------------

  fileInput.addEventListener('change', function () {
    addFiles(fileInput.files);
    // Let the same file be chosen again later (after fixing the token, say).
    fileInput.value = '';
  });

  let dragDepth = 0;
  dropZone.addEventListener('dragenter', function (event) {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    dragDepth += 1;
    dropZone.classList.add('dragging');
  });
  dropZone.addEventListener('dragover', function (event) {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
  });
  dropZone.addEventListener('dragleave', function () {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) dropZone.classList.remove('dragging');
  });
  dropZone.addEventListener('drop', function (event) {
    event.preventDefault();
    dragDepth = 0;
    dropZone.classList.remove('dragging');
    if (event.dataTransfer && event.dataTransfer.files) {
      addFiles(event.dataTransfer.files);
    }
  });

  // A file dropped beside the drop zone would make the browser leave the page and open it.
  window.addEventListener('dragover', function (event) {
    if (carriesFiles(event)) event.preventDefault();
  });
  window.addEventListener('drop', function (event) {
    if (carriesFiles(event)) event.preventDefault();
  });

  function carriesFiles(event) {
    const types = event.dataTransfer && event.dataTransfer.types;
    return Boolean(types) && Array.prototype.indexOf.call(types, 'Files') !== -1;
  }

  function addFiles(fileList) {
    const files = Array.prototype.slice.call(fileList || []);
    if (files.length === 0) return;
    const collection = currentCollection();

    // Newest batch first, in the order chosen; bring it into view (on a phone it is below the
    // form) without moving focus.
    const batch = document.createDocumentFragment();
    const items = files.map(function (file) {
      const item = createItem(file, collection);
      batch.appendChild(item.node);
      return item;
    });
    list.insertBefore(batch, list.firstChild);
    emptyNote.hidden = true;
    items[0].node.scrollIntoView({ block: 'nearest' });
    Array.prototype.push.apply(queue, items);

    announce(
      files.length === 1
        ? 'Uploading ' + files[0].name + '.'
        : 'Uploading ' + files.length + ' photos, one after another.'
    );
    pump();
  }

  // ---- One list item per file -----------------------------------------------------------

  function createItem(file, collection) {
    const node = template.content.firstElementChild.cloneNode(true);
    const id = 'upload-' + nextId++;
    const item = {
      file: file,
      collection: collection,
      node: node,
      name: node.querySelector('.upload-name'),
      meta: node.querySelector('.upload-meta'),
      progress: node.querySelector('.upload-progress'),
      message: node.querySelector('.upload-message'),
      actions: node.querySelector('.upload-actions'),
      retry: node.querySelector('.retry'),
      result: node.querySelector('.upload-result'),
      preview: node.querySelector('.upload-preview'),
      link: node.querySelector('.link'),
      linkLabel: node.querySelector('.link-label'),
      copy: node.querySelector('.copy'),
    };

    node.id = id;
    item.name.id = id + '-name';
    item.name.textContent = file.name || '(no name)';
    item.meta.textContent = humanBytes(file.size) + ' · ' + collection;
    item.progress.setAttribute('aria-labelledby', id + '-name');
    item.message.id = id + '-message';
    item.progress.setAttribute('aria-describedby', item.message.id);
    item.link.id = id + '-link';
    item.linkLabel.htmlFor = item.link.id;
    item.linkLabel.textContent = 'Link to ' + (file.name || 'the photo');
    item.copy.setAttribute('aria-describedby', id + '-name');
    item.retry.setAttribute('aria-describedby', id + '-name');

    item.retry.addEventListener('click', function () {
      item.actions.hidden = true;
      setState(item, 'waiting', 'Waiting…');
      queue.push(item);
      announce('Trying ' + item.file.name + ' again.');
      pump();
    });
    item.copy.addEventListener('click', function () {
      copyLink(item);
    });

    setState(item, 'waiting', 'Waiting…');
    return item;
  }

  function setState(item, state, message) {
    item.node.dataset.state = state;
    item.message.textContent = message;
    if (state === 'waiting') {
      item.progress.removeAttribute('value'); // an indeterminate bar
      item.progress.hidden = false;
    }
  }

  // ---- Sending --------------------------------------------------------------------------

  function pump() {
    if (busy) return;
    const item = queue.shift();
    if (!item) return;
    busy = true;
    send(item, function () {
      busy = false;
      pump();
    });
  }

  function send(item, done) {
    const token = currentToken();
    const xhr = new XMLHttpRequest();
    const body = new FormData();
    body.append('file', item.file, item.file.name);

    xhr.open('POST', '/' + encodeURIComponent(item.collection));
    xhr.setRequestHeader('Accept', 'application/json');
    if (token) {
      try {
        xhr.setRequestHeader('Authorization', 'Bearer ' + token);
      } catch (_) {
        fail(item, 'The token contains characters that cannot be sent. Paste it again.', true);
        done();
        return;
      }
    }

    item.progress.value = 0;
    setMessage(item, 'uploading', 'Uploading… 0%');

    xhr.upload.addEventListener('progress', function (event) {
      if (!event.lengthComputable || event.total === 0) return;
      const percent = Math.floor((event.loaded / event.total) * 100);
      item.progress.value = percent;
      setMessage(item, 'uploading', 'Uploading… ' + percent + '%');
    });
    xhr.upload.addEventListener('load', function () {
      item.progress.value = 100;
      setMessage(item, 'saving', 'Saving…');
    });

    xhr.addEventListener('load', function () {
      const answer = parseJson(xhr.responseText);
      if (xhr.status === 201 && answer && Array.isArray(answer.files) && answer.files[0]) {
        succeed(item, answer.files[0]);
      } else {
        const refusal = explain(xhr.status, answer, item, token !== '');
        fail(item, refusal.text, refusal.retry);
      }
      done();
    });
    xhr.addEventListener('error', function () {
      // NOTE: a server that refuses a large file early closes the connection while the browser is
      // still sending, and the browser may then report a network error instead of the answer.
      const limit = knownLimit;
      if (limit !== null && item.file.size > limit) {
        fail(item, tooLargeText(item.file.size, limit), false);
      } else {
        fail(item, 'Could not reach the server, so the photo was not saved. Check your connection and try again.', true);
      }
      done();
    });
    xhr.addEventListener('abort', function () {
      fail(item, 'The upload was stopped before it finished; the photo was not saved.', true);
      done();
    });

    xhr.send(body);
  }

  function setMessage(item, state, message) {
    item.node.dataset.state = state;
    item.message.textContent = message;
  }

  function succeed(item, stored) {
    const url = new URL(stored.url, window.location.href).href;
    item.progress.value = 100;
    item.progress.hidden = true;
    setMessage(item, 'done', 'Uploaded (' + humanBytes(stored.size) + ').');
    item.meta.textContent = humanBytes(stored.size) + ' · ' + item.collection;

    item.preview.alt = 'Preview of ' + item.file.name;
    item.preview.addEventListener('error', function () {
      item.preview.hidden = true;
      setMessage(item, 'done', 'Uploaded. This browser cannot show a preview of this kind of image (' +
        typeName(stored.content_type) + '), but the photo is stored.');
    });
    item.preview.src = stored.url;
    item.link.value = url;
    item.result.hidden = false;
    announce(item.file.name + ' was uploaded.');
  }

  function fail(item, text, canRetry) {
    item.progress.hidden = true;
    setMessage(item, 'failed', text);
    item.actions.hidden = !canRetry;
    announce(item.file.name + ' was not uploaded. ' + text);
  }

  // ---- What the server said, in plain words ---------------------------------------------

  // The per-file limit, once a refusal has told us.
  let knownLimit = null;

  function explain(statusCode, answer, item, sentToken) {
    const error = answer && answer.error ? answer.error : {};
    const code = typeof error.code === 'string' ? error.code : '';
    const message = typeof error.message === 'string' ? error.message : '';

    switch (code || String(statusCode)) {
      case 'unauthorized':
      case '401':
        return {
          text: sentToken
            ? 'Not authorised: the upload token is wrong. Check it and try again.'
            : 'Not authorised: enter the upload token (step 2), then try again.',
          retry: true,
        };
      case 'forbidden':
      case '403':
        return {
          text: 'Not authorised: this server accepts uploads only with a token, and it has none set up. Ask the person who runs it.',
          retry: false,
        };
      case 'too_large':
      case '413': {
        const match = /limit is (\d+) bytes/.exec(message);
        if (match) knownLimit = Number(match[1]);
        return { text: tooLargeText(item.file.size, knownLimit), retry: false };
      }
      case 'unsupported_type':
      case '415':
        return { text: notAnImageText(message), retry: false };
      case 'empty_file':
        return { text: 'This file is empty (0 bytes), so there is nothing to upload.', retry: false };
      case 'invalid_path':
        return {
          text: 'The server does not accept this file name. Rename the file and try again.',
          retry: false,
        };
      case 'not_found':
      case '404':
        return {
          text: 'This server has no place called "' + item.collection + '" to store photos. Choose the other one, or ask the person who runs it.',
          retry: false,
        };
      case 'request_timeout':
      case '408':
        return {
          text: 'The upload stalled: the connection was too slow or was interrupted. Try again.',
          retry: true,
        };
      case 'insufficient_storage':
      case '507':
        return {
          text: 'The server is out of space, so the photo was not saved. Tell the person who runs it.',
          retry: true,
        };
      case 'storage_unavailable':
      case '503':
        return {
          text: 'The server cannot save photos right now, so this one was not saved. Try again later.',
          retry: true,
        };
      case 'malformed_multipart':
      case 'no_file':
      case 'too_many_files':
        return {
          text: 'The upload did not arrive whole, so the photo was not saved. Try again.',
          retry: true,
        };
      default:
        return {
          text: 'Something went wrong on the server (error ' + statusCode + '), so the photo was not saved. Try again later.',
          retry: true,
        };
    }
  }

  function tooLargeText(size, limit) {
    if (limit === null) {
      return 'Too large: this file (' + humanBytes(size) + ') is over the server\'s size limit.';
    }
    return 'Too large: the limit is ' + humanBytes(limit) + ' per photo, and this file is ' +
      humanBytes(size) + '.';
  }

  function notAnImageText(message) {
    // The server says "…the file's bytes are <what>; allowed: jpeg, png, …".
    const found = /bytes are ([^;]+);\s*allowed:\s*(.+)$/.exec(message);
    const accepted = 'Choose a photo (JPEG, PNG, WebP, GIF, AVIF or HEIC).';
    if (!found) {
      return 'Not an image: the server refused this file. ' + accepted;
    }
    const what = found[1].trim();
    const allowed = found[2].split(',').map(function (name) {
      return name.trim() ? typeName('image/' + name.trim()) : '';
    }).filter(Boolean).join(', ');
    const choose = allowed ? 'Choose a photo (' + allowed + ').' : accepted;
    if (what.indexOf('image/') === 0) {
      return 'This server does not accept ' + typeName(what) + ' images. ' + choose;
    }
    return 'Not an image: this file is ' + describeContent(what) + '. ' + choose;
  }

  function describeContent(mime) {
    const known = {
      'text/html': 'a web page (HTML)',
      'text/xml': 'an XML document',
      'application/pdf': 'a PDF document',
      'application/zip': 'a ZIP archive',
      'application/x-executable': 'a program',
      'application/x-elf': 'a program',
      'application/x-sharedlib': 'a program',
    };
    if (known[mime]) return known[mime];
    if (mime.indexOf('/') === -1) return 'something else'; // "data that is not a recognised image"
    return 'something else (' + mime + ')';
  }

  function typeName(mime) {
    const part = String(mime || '').split('/')[1] || 'unknown';
    const names = { jpeg: 'JPEG', png: 'PNG', webp: 'WebP', gif: 'GIF', avif: 'AVIF', heic: 'HEIC', heif: 'HEIC' };
    return names[part] || part.toUpperCase();
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch (_) {
      return null; // a proxy's HTML error page, say
    }
  }

  function humanBytes(bytes) {
    if (!(bytes >= 0)) return '? bytes';
    if (bytes < 1024) return bytes + (bytes === 1 ? ' byte' : ' bytes');
    const units = ['KB', 'MB', 'GB'];
    let value = bytes / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    const rounded = value >= 10 || Number.isInteger(value) ? Math.round(value) : Math.round(value * 10) / 10;
    return rounded + ' ' + units[unit];
  }

  // ---- Copying a link -------------------------------------------------------------------

  function copyLink(item) {
    const text = item.link.value;
    const copied = function () {
      item.copy.textContent = 'Copied';
      announce('The link to ' + item.file.name + ' was copied.');
      window.setTimeout(function () {
        item.copy.textContent = 'Copy link';
      }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(copied, function () {
        copyBySelection(item, copied);
      });
    } else {
      copyBySelection(item, copied);
    }
  }

  // NOTE: without HTTPS there is no clipboard API; selecting the text and asking the browser to
  // copy still works in most browsers, and otherwise the link is left selected for the person.
  function copyBySelection(item, copied) {
    item.link.focus();
    item.link.select();
    let ok = false;
    try {
      ok = document.execCommand('copy');
    } catch (_) {
      ok = false;
    }
    if (ok) {
      copied();
    } else {
      announce('Could not copy by itself: the link is selected, press Ctrl+C (or long-press and Copy).');
    }
  }

  // ---- Announcements --------------------------------------------------------------------

  function announce(text) {
    // Clearing first makes screen readers repeat a message that did not change.
    status.textContent = '';
    window.setTimeout(function () {
      status.textContent = text;
    }, 50);
  }
})();
