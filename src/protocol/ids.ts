/** Protocol ids krill speaks (protocols/README.md). */
export const CHAT_PROTOCOL = '/krill/chat/1.0.0'
