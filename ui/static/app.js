// OMERTAOS console: the parts every page shares. No inline script runs on
// these pages (the Content-Security-Policy forbids it); this file attaches
// to the markup instead.
(function () {
  'use strict';

  // Forms marked data-confirm ask before they are sent, in the page's own
  // <dialog>. Without JavaScript they are sent at once, as a plain form.
  function setupConfirm() {
    var dialog = document.getElementById('confirm-dialog');
    if (!dialog || typeof dialog.showModal !== 'function') return;
    var message = document.getElementById('confirm-message');
    var pending = null;
    document.addEventListener('submit', function (ev) {
      var form = ev.target;
      if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
      if (form.dataset.confirmed === 'yes') { form.dataset.confirmed = ''; return; }
      ev.preventDefault();
      pending = { form: form, submitter: ev.submitter || null };
      message.textContent = form.dataset.confirm;
      dialog.returnValue = '';
      dialog.showModal();
    }, true);
    dialog.addEventListener('close', function () {
      var p = pending;
      pending = null;
      if (!p || dialog.returnValue !== 'ok') return;
      p.form.dataset.confirmed = 'yes';
      if (typeof p.form.requestSubmit === 'function') p.form.requestSubmit(p.submitter);
      else p.form.submit();
    });
  }

  // One-time secrets are selected whole when focused, ready to copy.
  function setupCopy() {
    document.querySelectorAll('input.copy').forEach(function (el) {
      el.addEventListener('focus', function () { el.select(); });
    });
  }

  // A form is sent once: a double click does not deploy twice.
  function setupOnce() {
    document.addEventListener('submit', function (ev) {
      var form = ev.target;
      if (ev.defaultPrevented || !(form instanceof HTMLFormElement) || form.method.toLowerCase() !== 'post') return;
      if (form.dataset.sending === 'yes') { ev.preventDefault(); return; }
      form.dataset.sending = 'yes';
      form.setAttribute('aria-busy', 'true');
    });
    window.addEventListener('pageshow', function () {
      document.querySelectorAll('form[data-sending]').forEach(function (f) {
        f.dataset.sending = '';
        f.removeAttribute('aria-busy');
      });
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    setupConfirm();
    setupCopy();
    setupOnce();
  });
})();
