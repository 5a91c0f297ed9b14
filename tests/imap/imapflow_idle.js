// imapflow against Postern (tests/imap.rs, imapflow_idle_sees_new_mail):
// open INBOX over implicit TLS, IDLE, and report the `exists` event when a
// message arrives. One line per step on stdout, for the test to follow:
//   opened N       INBOX opened with N messages
//   idling         the server accepted IDLE (imapflow logged it)
//   exists C P     the exists event: count C, previous count P
//   fetched SUBJ   the new message's subject, fetched after the event
//   done           logged out
//   error MSG      anything failed
// Env: IMAP_PORT, IMAP_USER, IMAP_PASS; NODE_PATH finds imapflow.
'use strict';

const { ImapFlow } = require('imapflow');

let said = false;
const say = line => process.stdout.write(line + '\n');

// imapflow logs "Initiated IDLE" once the server answered IDLE with "+":
// the moment the test may deliver the message.
const quiet = () => {};
const logger = {
    trace: quiet,
    info: quiet,
    warn: quiet,
    error: quiet,
    debug: entry => {
        if (!said && entry && typeof entry.msg === 'string' && entry.msg.startsWith('Initiated IDLE')) {
            said = true;
            say('idling');
        }
    }
};

const client = new ImapFlow({
    host: '127.0.0.1',
    port: Number(process.env.IMAP_PORT),
    secure: true,
    tls: { rejectUnauthorized: false },
    auth: { user: process.env.IMAP_USER, pass: process.env.IMAP_PASS },
    logger
});

const limit = setTimeout(() => {
    say('error no exists event within 30 s');
    process.exit(1);
}, 30000);

client.on('error', err => {
    say('error ' + err.message);
    process.exit(1);
});

async function main() {
    await client.connect();
    const mailbox = await client.mailboxOpen('INBOX');
    say('opened ' + mailbox.exists);
    const arrived = new Promise(resolve => client.once('exists', resolve));
    client.idle().catch(err => say('error IDLE: ' + err.message));
    const ev = await arrived;
    say('exists ' + ev.count + ' ' + ev.prevCount);
    const msg = await client.fetchOne(String(ev.count), { envelope: true });
    say('fetched ' + (msg && msg.envelope ? msg.envelope.subject : 'nothing'));
    await client.logout();
    clearTimeout(limit);
    say('done');
}

main().catch(err => {
    say('error ' + (err.responseText || err.message));
    process.exit(1);
});
