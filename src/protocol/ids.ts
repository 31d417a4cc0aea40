/** Protocol ids krill speaks (protocols/README.md). */
export const CHAT_PROTOCOL = '/krill/chat/1.0.0'
export const EMBED_PROTOCOL = '/krill/embed/1.0.0'
export const SHOW_PROTOCOL = '/krill/show/1.0.0'
