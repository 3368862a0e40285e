// The streaming loop of the openai Node client's README, against `feedit serve`.
// Usage: node stream.mjs BASE_URL MODEL; prints {"text": ..., "finish": ...} as JSON.
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "Explain CRDTs briefly." }],
  stream: true,
});
let text = "";
let finish = null;
for await (const chunk of stream) {
  text += chunk.choices[0]?.delta?.content || "";
  // Written the way most code does, without `?.` on the choice: an empty `choices` breaks it.
  finish = chunk.choices[0].finish_reason ?? finish;
}
console.log(JSON.stringify({ text, finish }));
